"""Mixer's RBAC evaluation: may this subject perform this action, under a config's ServiceRoles?

Pure functions over ``mixer.config.RbacPolicy``. A request is allowed when some ServiceRole in the
action's namespace has a rule matching the action (service, method, path, constraints) and one of
that role's ServiceRoleBindings names the subject. Strings match exactly, ``*`` matches anything,
``abc*`` by prefix and ``*abc`` by suffix (Mixer's stringMatch).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from mixer.config import AccessRule, RbacPolicy, RoleSubject, ServiceRole, ServiceRoleBinding


def string_match(value: str, patterns: Sequence[str]) -> bool:
    for pattern in patterns:
        if pattern == "*" or value == pattern:
            return True
        if pattern.endswith("*") and value.startswith(pattern[:-1]):
            return True
        if pattern.startswith("*") and value.endswith(pattern[1:]):
            return True
    return False


class Request(NamedTuple):
    """The authorization instance's fields Mixer's adapter read. A named tuple: one is made per
    check, and a frozen dataclass's ``__init__`` sets each of its eight fields through
    ``object.__setattr__``."""

    namespace: str
    service: str
    method: str
    path: str
    action_properties: Mapping[str, Any]
    user: str
    groups: str
    subject_properties: Mapping[str, Any]

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Request:
        subject, action = fields.get("subject") or {}, fields.get("action") or {}
        return cls(
            namespace=str(action.get("namespace", "")),
            service=str(action.get("service", "")),
            method=str(action.get("method", "")),
            path=str(action.get("path", "")),
            action_properties=action.get("properties") or {},
            user=str(subject.get("user", "")),
            groups=str(subject.get("groups", "")),
            subject_properties=subject.get("properties") or {},
        )

    def missing(self) -> list[str]:
        """Action fields Mixer required (it denied without them)."""
        return [f"action.{name}" for name in ("namespace", "service", "method", "path") if not getattr(self, name)]


def rule_matches(rule: AccessRule, request: Request) -> bool:
    if not (string_match(request.service, rule.services) and string_match(request.method, rule.methods)):
        return False
    if rule.paths is not None and not string_match(request.path, rule.paths):
        return False
    # Every constraint needs a string action property whose value it lists.
    for constraint in rule.constraints:
        value = request.action_properties.get(constraint.key)
        if not isinstance(value, str) or not string_match(value, constraint.values):
            return False
    return True


def subject_matches(subject: RoleSubject, request: Request) -> bool:
    """Every field the subject sets must match (``*`` for any user or group)."""
    if subject.user and subject.user not in ("*", request.user):
        return False
    if subject.group and subject.group not in ("*", request.groups):
        return False
    return all(request.subject_properties.get(key) == value for key, value in subject.properties)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str  # for a denial: which roles and bindings were considered and why none allowed


def _exact(pattern: str) -> bool:
    return pattern != "*" and not pattern.startswith("*") and not pattern.endswith("*")


class Authorizer:
    """A policy indexed by namespace, and within it by exact service name, built once per handler:
    a check looks only at the roles naming its service plus those using service wildcards."""

    def __init__(self, policy: RbacPolicy) -> None:
        self._role_names: dict[str, str] = {}
        self._by_service: dict[tuple[str, str], list[ServiceRole]] = defaultdict(list)
        self._by_pattern: dict[str, list[ServiceRole]] = defaultdict(list)
        for role in policy.roles:  # sorted by name: denials list roles in a stable order
            self._role_names[role.namespace] = ", ".join(
                filter(None, (self._role_names.get(role.namespace), role.name)))
            services = {service for rule in role.rules for service in rule.services}
            if all(_exact(service) for service in services):
                for service in sorted(services):
                    self._by_service[(role.namespace, service)].append(role)
            else:
                self._by_pattern[role.namespace].append(role)
        self._bindings: dict[tuple[str, str], list[ServiceRoleBinding]] = defaultdict(list)
        self._allow_verdicts: dict[tuple[str, str, str], Verdict] = {}  # bounded by the policy's bindings
        for binding in policy.bindings:
            self._bindings[(binding.namespace, binding.role)].append(binding)

    def _candidates(self, request: Request) -> list[ServiceRole]:
        named = self._by_service.get((request.namespace, request.service), [])
        patterned = self._by_pattern.get(request.namespace, [])
        if not patterned:
            return named
        return sorted({id(role): role for role in (*named, *patterned)}.values(), key=lambda role: role.name)

    def check(self, request: Request) -> Verdict:
        if not (request.namespace and request.service and request.method and request.path):
            return Verdict(False, f"the authorization instance has no {', '.join(request.missing())}")
        names = self._role_names.get(request.namespace)
        if names is None:
            return Verdict(False, f"no ServiceRole in namespace {request.namespace!r}")
        eligible = [role for role in self._candidates(request)
                    if any(rule_matches(rule, request) for rule in role.rules)]
        if not eligible:
            return Verdict(False, f"no ServiceRole in namespace {request.namespace!r} allows {_action(request)} "
                                  f"(roles: {names})")
        considered: list[str] = []
        for role in eligible:
            bindings = self._bindings.get((role.namespace, role.name), [])
            for binding in bindings:
                if any(subject_matches(subject, request) for subject in binding.subjects):
                    return self._allowed(role, binding)
            considered.append(_why_not(role, bindings, request))
        return Verdict(False, "; ".join(considered))

    def _allowed(self, role: ServiceRole, binding: ServiceRoleBinding) -> Verdict:
        """The allowing verdict of a role and binding, made once: most checks are allowed."""
        key = (role.namespace, role.name, binding.name)
        verdict = self._allow_verdicts.get(key)
        if verdict is None:
            verdict = self._allow_verdicts[key] = Verdict(True, f"ServiceRole {role.name!r} bound by {binding.name!r}")
        return verdict


def _action(request: Request) -> str:
    return f"{request.method} {request.path} on service {request.service}"


def _why_not(role: ServiceRole, bindings: Sequence[ServiceRoleBinding], request: Request) -> str:
    """Why ``role``, which allows the action, does not allow this subject (denials only: formatting
    waits until it is needed)."""
    who = f"user {request.user!r}" + (f" (group {request.groups!r})" if request.groups else "")
    allows = f"ServiceRole {role.name!r} allows {_action(request)}"
    if not bindings:
        return f"{allows} but no ServiceRoleBinding refers to it"
    if len(bindings) == 1:
        return f"{allows} but its ServiceRoleBinding {bindings[0].name!r} does not name {who}"
    names = ", ".join(repr(binding.name) for binding in bindings)
    return f"{allows} but none of its ServiceRoleBindings ({names}) names {who}"
