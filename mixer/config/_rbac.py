"""Istio's RBAC documents (``rbac.istio.io/v1alpha1`` ServiceRole and ServiceRoleBinding), validated.

They are config like handlers and rules, loaded from the same files; the compiled config carries
them as one ``RbacPolicy``, which the loader hands to adapters that declare they use it (the rbac
adapter). Only the fields Mixer's rbac adapter evaluated are accepted: a field it ignored (``notPaths``,
``ports``, ``mode``...) is rejected, so a role never allows more than it reads as allowing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

RBAC_API_VERSION = "rbac.istio.io/v1alpha1"
RBAC_KINDS = ("ServiceRole", "ServiceRoleBinding")
RBAC_PILOT_KINDS = ("RbacConfig", "ClusterRbacConfig")  # for Pilot (Envoy's RBAC filter), not Mixer

# path below the document, message -> a Problem (the loader's _Doc.problem)
Report = Callable[[tuple[str | int, ...], str], None]


@dataclass(frozen=True, slots=True)
class Constraint:
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AccessRule:
    services: tuple[str, ...]
    methods: tuple[str, ...]
    paths: tuple[str, ...] | None  # None: any path (Mixer's nil paths)
    constraints: tuple[Constraint, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceRole:
    name: str
    namespace: str
    rules: tuple[AccessRule, ...]


@dataclass(frozen=True, slots=True)
class RoleSubject:
    user: str = ""
    group: str = ""
    properties: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceRoleBinding:
    name: str
    namespace: str
    role: str  # the ServiceRole's name, in the binding's namespace
    subjects: tuple[RoleSubject, ...]


@dataclass(frozen=True, slots=True)
class RbacPolicy:
    """Every ServiceRole and ServiceRoleBinding of a config, sorted by namespace and name."""

    roles: tuple[ServiceRole, ...] = ()
    bindings: tuple[ServiceRoleBinding, ...] = ()

    def fingerprint(self) -> str:
        """Changes whenever a role or binding does: part of a consuming handler's identity."""
        return hashlib.sha256(repr((self.roles, self.bindings)).encode()).hexdigest()


@runtime_checkable
class UsesRbacPolicy(Protocol):
    """An adapter whose handlers need the config's RbacPolicy (besides their params)."""

    def with_rbac_policy(self, params: Any, policy: RbacPolicy) -> Any:
        """``params`` with ``policy`` attached; called after ``parse_params``."""
        ...


_RULE_FIELDS = ("services", "methods", "paths", "constraints")
_SUBJECT_FIELDS = ("user", "group", "properties")
# Fields of rbac.istio.io/v1alpha1 that Mixer's rbac adapter never evaluated.
_IGNORED_BY_MIXER = frozenset({"hosts", "notHosts", "notPaths", "notMethods", "ports", "notPorts", "names",
                               "notNames", "groups", "notGroups", "namespaces", "notNamespaces", "ips",
                               "notIps", "mode", "actions", "role"})


def service_role(name: str, namespace: str, spec: Mapping[str, Any], report: Report) -> ServiceRole | None:
    counted = _Counter(report)
    _fields(spec, ("rules",), ("spec",), counted)
    raw_rules = spec.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        counted(("spec", "rules"), "a ServiceRole needs a non-empty list of rules")
        return None
    rules = [_rule(raw, ("spec", "rules", i), counted) for i, raw in enumerate(raw_rules)]
    if counted.count:
        return None
    return ServiceRole(name, namespace, tuple(r for r in rules if r is not None))


def service_role_binding(
    name: str, namespace: str, spec: Mapping[str, Any], report: Report
) -> ServiceRoleBinding | None:
    counted = _Counter(report)
    _fields(spec, ("subjects", "roleRef"), ("spec",), counted)
    role_ref = spec.get("roleRef")
    role = ""
    if not isinstance(role_ref, dict):
        counted(("spec", "roleRef"), "roleRef {kind: ServiceRole, name: ...} is required")
    else:
        _fields(role_ref, ("kind", "name"), ("spec", "roleRef"), counted)
        if role_ref.get("kind") != "ServiceRole":
            counted(("spec", "roleRef", "kind"), f"must be ServiceRole, got {role_ref.get('kind')!r}")
        role = role_ref.get("name") or ""
        if not isinstance(role, str) or not role:
            counted(("spec", "roleRef", "name"), "must name a ServiceRole")
            role = ""
    raw_subjects = spec.get("subjects")
    subjects: list[RoleSubject] = []
    if not isinstance(raw_subjects, list) or not raw_subjects:
        counted(("spec", "subjects"), "a ServiceRoleBinding needs a non-empty list of subjects")
    else:
        for index, raw in enumerate(raw_subjects):
            subject = _subject(raw, ("spec", "subjects", index), counted)
            if subject is not None:
                subjects.append(subject)
    if counted.count:
        return None
    return ServiceRoleBinding(name, namespace, role, tuple(subjects))


def policy(roles: Sequence[ServiceRole], bindings: Sequence[tuple[ServiceRoleBinding, Report]]) -> RbacPolicy:
    """Link bindings to roles (a binding's role must exist in its namespace) and sort both."""
    known = {(role.namespace, role.name) for role in roles}
    linked: list[ServiceRoleBinding] = []
    for binding, report in bindings:
        if (binding.namespace, binding.role) not in known:
            report(("spec", "roleRef", "name"),
                   f"no ServiceRole {binding.role!r} in namespace {binding.namespace!r}")
            continue
        linked.append(binding)
    return RbacPolicy(
        tuple(sorted(roles, key=lambda r: (r.namespace, r.name))),
        tuple(sorted(linked, key=lambda b: (b.namespace, b.name))),
    )


class _Counter:
    """Forwards problems to the loader and counts them, so a document with any is dropped whole."""

    def __init__(self, report: Report) -> None:
        self.report, self.count = report, 0

    def __call__(self, path: tuple[str | int, ...], message: str) -> None:
        self.count += 1
        self.report(path, message)


def _fields(raw: Mapping[str, Any], allowed: Sequence[str], path: tuple[str | int, ...], report: Report) -> None:
    for key in raw:
        if key in allowed:
            continue
        if key in _IGNORED_BY_MIXER:
            report((*path, key), f"{key!r} is not supported: Mixer's rbac adapter did not evaluate it, and "
                                 "ignoring it would allow more than the document says")
        else:
            report((*path, key), f"unknown field (known: {', '.join(allowed)})")


def _strings(raw: Any, path: tuple[str | int, ...], report: Report, required: bool) -> tuple[str, ...] | None:
    if raw is None and not required:
        return None
    if not isinstance(raw, list) or not all(isinstance(item, str) and item for item in raw):
        report(path, "must be a list of non-empty strings")
        return None
    if required and not raw:
        report(path, 'must not be empty (an empty list matches nothing; write ["*"] for any)')
        return None
    return tuple(raw)


def _required(raw: Mapping[str, Any], key: str, path: tuple[str | int, ...], report: Report) -> tuple[str, ...] | None:
    if key not in raw:
        report((*path, key), f'is required (write ["*"] for any {key[:-1]})')
        return None
    return _strings(raw[key], (*path, key), report, required=True)


def _rule(raw: Any, path: tuple[str | int, ...], report: Report) -> AccessRule | None:
    if not isinstance(raw, dict):
        report(path, "a rule must be a mapping")
        return None
    _fields(raw, _RULE_FIELDS, path, report)
    services, methods = (_required(raw, key, path, report) for key in ("services", "methods"))
    paths = _strings(raw.get("paths"), (*path, "paths"), report, required=False)
    constraints: list[Constraint] = []
    raw_constraints = raw.get("constraints") or []
    if not isinstance(raw_constraints, list):
        report((*path, "constraints"), "must be a list of {key, values}")
        raw_constraints = []
    for index, item in enumerate(raw_constraints):
        here = (*path, "constraints", index)
        if not isinstance(item, dict):
            report(here, "a constraint must be a mapping {key, values}")
            continue
        _fields(item, ("key", "values"), here, report)
        key = item.get("key")
        if not isinstance(key, str) or not key:
            report((*here, "key"), "must be a non-empty string")
            continue
        values = _strings(item.get("values"), (*here, "values"), report, required=True)
        if values is not None:
            constraints.append(Constraint(key, values))
    if services is None or methods is None:
        return None
    return AccessRule(services, methods, paths, tuple(constraints))


def _subject(raw: Any, path: tuple[str | int, ...], report: Report) -> RoleSubject | None:
    if not isinstance(raw, dict):
        report(path, "a subject must be a mapping")
        return None
    _fields(raw, _SUBJECT_FIELDS, path, report)
    user, group = raw.get("user", ""), raw.get("group", "")
    ok = True
    for key, value in (("user", user), ("group", group)):
        if not isinstance(value, str):
            report((*path, key), "must be a string")
            ok = False
    properties = raw.get("properties") or {}
    if not isinstance(properties, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in properties.items()):
        report((*path, "properties"), "must be a mapping of names to string values")
        return None
    if ok and not (user or group or properties):
        report(path, "a subject needs a user, a group or properties")
        return None
    if not ok:
        return None
    return RoleSubject(user, group, tuple(sorted(properties.items())))
