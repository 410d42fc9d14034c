"""The rbac adapter (Mixer's): Istio ServiceRoles and ServiceRoleBindings for the authorization template.

The roles are ``rbac.istio.io/v1alpha1`` documents in the mixer's own config files (the loader
validates them and hands them to this adapter with its params); a change to any of them rebuilds
the handler with the next config swap.

Params (Mixer's, snake_case or camelCase):

- ``cacheDuration`` (default 60s): how long the proxy may reuse an answer (use count 1e9, as Mixer).
- ``configStoreUrl``: accepted for Istio configs (``k8s://``) and ignored: roles come from the
  config files.

An authorization instance names ``action.namespace/service/method/path`` (all required, as in
Mixer), ``action.properties`` (matched by ServiceRole constraints) and ``subject.user/groups/
properties`` (matched by binding subjects: every field a subject sets must match, ``*`` for any user
or group). A denial is PERMISSION_DENIED ``RBAC: permission denied: ...`` naming the roles and bindings
that were considered and did not allow the request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from adapters.rbac.policy import Authorizer, Request
from mixer.attributes import parse_duration
from mixer.config import RbacPolicy
from mixer.sdk import (
    OK,
    PERMISSION_DENIED,
    Adapter,
    CheckResult,
    Env,
    Handler,
    Instance,
    InstanceSchema,
    ParamsError,
    unknown_fields,
)

__all__ = ["RbacAdapter", "RbacHandler", "RbacParams"]

DEFAULT_CACHE_DURATION = dt.timedelta(seconds=60)
VALID_USE_COUNT = 1_000_000_000  # Mixer's rbac answers were reusable this many times


@dataclass(frozen=True)
class RbacParams:
    cache_duration: dt.timedelta = DEFAULT_CACHE_DURATION
    policy: RbacPolicy = field(default_factory=RbacPolicy)


class RbacHandler(Handler):
    def __init__(self, params: RbacParams, env: Env) -> None:
        self.authorizer = Authorizer(params.policy)
        self.cache_duration = params.cache_duration
        self.log = env.logger
        self._allowed = CheckResult(OK, "", self.cache_duration, VALID_USE_COUNT)  # immutable: one for all

    async def check_authorization(self, instance: Instance) -> CheckResult:
        verdict = self.authorizer.check(Request.from_fields(instance.fields))
        if verdict.allowed:
            return self._allowed
        self.log.debug("rbac denied %s: %s", instance.name, verdict.reason)
        return CheckResult(PERMISSION_DENIED, f"RBAC: permission denied: {verdict.reason}", self.cache_duration,
                           VALID_USE_COUNT)


class RbacAdapter(Adapter):
    name = "rbac"
    templates = frozenset({"authorization"})

    def parse_params(self, raw: Mapping[str, Any]) -> RbacParams:
        spellings = {"cacheDuration": "cache_duration", "configStoreUrl": "config_store_url"}
        problems = unknown_fields(raw, (*spellings, *spellings.values()))
        given = {spellings.get(key, key): (key, value) for key, value in raw.items()}
        duration = DEFAULT_CACHE_DURATION
        if "cache_duration" in given:
            key, value = given["cache_duration"]
            try:
                duration = parse_duration(str(value))
                if duration < dt.timedelta(0):
                    problems.append((key, "must not be negative"))
            except ValueError as exc:
                problems.append((key, str(exc)))
        if "config_store_url" in given and not isinstance(given["config_store_url"][1], str):
            problems.append((given["config_store_url"][0], "must be a string"))
        if problems:
            raise ParamsError(problems)
        return RbacParams(duration)

    def with_rbac_policy(self, params: RbacParams, policy: RbacPolicy) -> RbacParams:
        return replace(params, policy=policy)

    def build(self, params: RbacParams, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        return RbacHandler(params, env)
