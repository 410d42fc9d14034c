"""Mixer's RBAC evaluation: may this subject perform this action, under a config's ServiceRoles?

Pure functions over ``mixer.config.RbacPolicy``. A request is allowed when some ServiceRole in the
action's namespace has a rule matching the action (service, method, path, constraints) and one of
that role's ServiceRoleBindings names the subject. Strings match exactly, ``*`` matches anything,
``abc*`` by prefix and ``*abc`` by suffix (Mixer's stringMatch).

The policy is compiled once per handler (``Authorizer``): each namespace's and service's roles in
order, each with its rules' patterns prepared (``string_match``) and its bindings, so that an allowed
check builds nothing; a denial works out its reason from the policy as written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import methodcaller
from typing import Any, NamedTuple

from mixer.config import AccessRule, RbacPolicy, RoleSubject, ServiceRole, ServiceRoleBinding


StringMatch = Callable[[str], bool]


def string_match(patterns: Sequence[str]) -> StringMatch:
    """Mixer's stringMatch over a list of patterns, prepared once: a value matches when it equals a
    pattern, a pattern is ``*``, or it starts with ``abc`` of an ``abc*`` or ends with ``abc`` of a
    ``*abc``. The usual lists (only exact names, or only prefixes) become one call in C."""
    exact = frozenset(patterns)
    prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
    suffixes = tuple(p[1:] for p in patterns if p.startswith("*"))
    if "*" in exact:
        return lambda value: True
    if not prefixes and not suffixes:
        return exact.__contains__
    if not suffixes and all(p.endswith("*") for p in patterns):
        return methodcaller("startswith", prefixes)
    return lambda value: value in exact or value.startswith(prefixes) or value.endswith(suffixes)


_new_tuple = tuple.__new__


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
        # Built in C, fields in order (the generated ``__new__`` would be a Python call per check).
        return _new_tuple(cls, (
            str(action.get("namespace", "")),
            str(action.get("service", "")),
            str(action.get("method", "")),
            str(action.get("path", "")),
            action.get("properties") or {},
            str(subject.get("user", "")),
            str(subject.get("groups", "")),
            subject.get("properties") or {},
        ))

    def missing(self) -> list[str]:
        """Action fields Mixer required (it denied without them)."""
        return [f"action.{name}" for name in ("namespace", "service", "method", "path") if not getattr(self, name)]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """An AccessRule with its patterns prepared."""

    services: StringMatch
    methods: StringMatch
    paths: StringMatch | None  # None: any path
    constraints: tuple[tuple[str, StringMatch], ...]

    @classmethod
    def of(cls, rule: AccessRule) -> CompiledRule:
        return cls(string_match(rule.services), string_match(rule.methods),
                   None if rule.paths is None else string_match(rule.paths),
                   tuple((c.key, string_match(c.values)) for c in rule.constraints))

    def matches(self, request: Request) -> bool:
        if not (self.services(request.service) and self.methods(request.method)):
            return False
        if self.paths is not None and not self.paths(request.path):
            return False
        # Every constraint needs a string action property whose value it lists.
        for key, match in self.constraints:
            value = request.action_properties.get(key)
            if not isinstance(value, str) or not match(value):
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


@dataclass(frozen=True, slots=True)
class _Grant:
    """A binding of a role, with the verdict it gives when it names the subject (made once). Its
    subjects that set only a user are a set lookup; the others are matched one by one."""

    any_user: bool  # a subject of user "*" (or of nothing) and no group or properties
    users: frozenset[str]  # the users of the other subjects that set nothing else
    others: tuple[RoleSubject, ...]
    allowed: Verdict

    @classmethod
    def of(cls, role: ServiceRole, binding: ServiceRoleBinding) -> _Grant:
        only_user = [s.user for s in binding.subjects if not s.group and not s.properties]
        return cls(bool({"", "*"} & set(only_user)), frozenset(only_user),
                   tuple(s for s in binding.subjects if s.group or s.properties),
                   Verdict(True, f"ServiceRole {role.name!r} bound by {binding.name!r}"))


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A role as a check reads it: its rules prepared, its bindings (in policy order)."""

    role: ServiceRole
    rules: tuple[CompiledRule, ...]
    bindings: tuple[ServiceRoleBinding, ...]
    grants: tuple[_Grant, ...]

    def allows_action(self, request: Request) -> bool:
        return any(rule.matches(request) for rule in self.rules)


def _exact(pattern: str) -> bool:
    return pattern != "*" and not pattern.startswith("*") and not pattern.endswith("*")


class Authorizer:
    """A policy indexed by namespace, and within it by exact service name, compiled once per
    handler: a check looks only at the roles naming its service plus those using service wildcards,
    merged by role name when compiled."""

    def __init__(self, policy: RbacPolicy) -> None:
        bindings: dict[tuple[str, str], list[ServiceRoleBinding]] = defaultdict(list)
        for binding in policy.bindings:
            bindings[(binding.namespace, binding.role)].append(binding)
        self._role_names: dict[str, str] = {}
        by_service: dict[tuple[str, str], list[_Candidate]] = defaultdict(list)
        by_pattern: dict[str, list[_Candidate]] = defaultdict(list)
        for role in policy.roles:  # sorted by name: denials list roles in a stable order
            self._role_names[role.namespace] = ", ".join(
                filter(None, (self._role_names.get(role.namespace), role.name)))
            candidate = _compile(role, bindings.get((role.namespace, role.name), []))
            services = {service for rule in role.rules for service in rule.services}
            if all(_exact(service) for service in services):
                for service in sorted(services):
                    by_service[(role.namespace, service)].append(candidate)
            else:
                by_pattern[role.namespace].append(candidate)
        # A service some role names: those roles and the namespace's patterned ones, by name; any
        # other service of the namespace: the patterned ones.
        self._by_service: dict[tuple[str, str], tuple[_Candidate, ...]] = {
            key: tuple(sorted({id(c): c for c in (*named, *by_pattern.get(key[0], ()))}.values(),
                              key=lambda c: c.role.name))
            for key, named in by_service.items()
        }
        self._by_pattern: dict[str, tuple[_Candidate, ...]] = {ns: tuple(c) for ns, c in by_pattern.items()}

    def _candidates(self, request: Request) -> tuple[_Candidate, ...]:
        candidates = self._by_service.get((request.namespace, request.service))
        return self._by_pattern.get(request.namespace, ()) if candidates is None else candidates

    def check(self, request: Request) -> Verdict:
        if request.namespace and request.service and request.method and request.path:
            # The first role (by name) allowing the action with a binding naming the subject allows.
            # (Loops, not any() over generators: this runs on every check.)
            for candidate in self._candidates(request):
                for rule in candidate.rules:
                    if rule.matches(request):
                        for grant in candidate.grants:
                            if grant.any_user or request.user in grant.users:
                                return grant.allowed
                            for subject in grant.others:
                                if subject_matches(subject, request):
                                    return grant.allowed
                        break
        return self._denial(request)

    def _denial(self, request: Request) -> Verdict:
        """Why nothing allowed ``request`` (denials only: formatting waits until it is needed)."""
        if not (request.namespace and request.service and request.method and request.path):
            return Verdict(False, f"the authorization instance has no {', '.join(request.missing())}")
        names = self._role_names.get(request.namespace)
        if names is None:
            return Verdict(False, f"no ServiceRole in namespace {request.namespace!r}")
        eligible = [c for c in self._candidates(request) if c.allows_action(request)]
        if not eligible:
            return Verdict(False, f"no ServiceRole in namespace {request.namespace!r} allows {_action(request)} "
                                  f"(roles: {names})")
        return Verdict(False, "; ".join(_why_not(c.role, c.bindings, request) for c in eligible))


def _compile(role: ServiceRole, bindings: Sequence[ServiceRoleBinding]) -> _Candidate:
    return _Candidate(
        role,
        tuple(CompiledRule.of(rule) for rule in role.rules),
        tuple(bindings),
        tuple(_Grant.of(role, binding) for binding in bindings),
    )


def _action(request: Request) -> str:
    return f"{request.method} {request.path} on service {request.service}"


def _why_not(role: ServiceRole, bindings: Sequence[ServiceRoleBinding], request: Request) -> str:
    """Why ``role``, which allows the action, does not allow this subject."""
    who = f"user {request.user!r}" + (f" (group {request.groups!r})" if request.groups else "")
    allows = f"ServiceRole {role.name!r} allows {_action(request)}"
    if not bindings:
        return f"{allows} but no ServiceRoleBinding refers to it"
    if len(bindings) == 1:
        return f"{allows} but its ServiceRoleBinding {bindings[0].name!r} does not name {who}"
    names = ", ".join(repr(binding.name) for binding in bindings)
    return f"{allows} but none of its ServiceRoleBindings ({names}) names {who}"
