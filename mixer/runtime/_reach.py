"""Which check rules can fire for a listener, decided from what is fixed before any request arrives.

A sidecar's inbound listener knows its own workload, namespace, labels and service: every Check it
sends carries them. Evaluating each check and quota rule's ``match`` against only those facts
(``Expression.decide``; every other attribute raises ``UnknownValue``) tells, exactly where it can,
whether the rule fires for every request there, for none, or depending on the request. From that:
whether the listener needs to call the mixer at all, and which rules deny it outright (so the proxy
can refuse those requests itself).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mixer.config import CompiledAction, CompiledConfig, CompiledRule
from mixer.expr import EvaluationError, Expression, UnknownValue
from mixer.sdk import OK, RESOURCE_EXHAUSTED, UNAUTHENTICATED
from mixer.templates import Variety

# Denier answers that Envoy's RBAC filter gives the same way (HTTP 403); 401 and 429 stay on ext_authz.
_NOT_A_403 = frozenset({OK, UNAUTHENTICATED, RESOURCE_EXHAUSTED})


class StaticFacts(Mapping[str, Any]):
    """The attributes fixed for a listener; any other attribute is ``UnknownValue``, never absent,
    unless ``varying`` names all that a Check may carry besides: then the rest are surely absent."""

    __slots__ = ("_known", "_varying")

    def __init__(self, known: Mapping[str, Any], varying: Collection[str] | None = None) -> None:
        self._known = dict(known)
        self._varying = None if varying is None else frozenset(varying)

    def _unknown(self, name: str) -> bool:
        return self._varying is None or name in self._varying

    def __getitem__(self, name: str) -> Any:
        try:
            return self._known[name]
        except KeyError:
            if self._unknown(name):
                raise UnknownValue(name) from None
            raise

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def __contains__(self, name: object) -> bool:
        if name in self._known:
            return True
        if self._unknown(str(name)):
            raise UnknownValue(str(name))
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._known)

    def __len__(self) -> int:
        return len(self._known)


@dataclass(frozen=True, slots=True)
class Denial:
    """A rule the proxy can enforce: deny when every ``(header, value)`` test holds; none: always."""

    rule: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ListenerPolicy:
    """What a listener must do before serving a request.

    ``check``: some check or quota rule may fire that the proxy cannot decide, so it asks the mixer.
    ``deny``: rules the proxy enforces itself (a denier answering 403 whose rule is decided by the
    fixed attributes and, at most, exact tests of request headers that alone carry an attribute).
    A denial without header tests refuses every request, so then nothing is asked.
    """

    check: bool
    deny: tuple[Denial, ...] = ()


def listener_policy(
    config: CompiledConfig,
    facts: Mapping[str, Any],
    header_only: Mapping[str, str] | None = None,
    varying: Collection[str] | None = None,
) -> ListenerPolicy:
    """The policy of a listener whose Checks all carry ``facts``.

    ``varying``: every other attribute such a Check may carry (a TCP connection's Check carries no
    request attributes, so a rule on ``request.path`` is decided for it); None: it may carry any.

    ``header_only`` maps attributes that only a request header sets to that header (the mapping's
    ``HEADER_ONLY_ATTRIBUTES``, when the mixer trusts peer headers): a rule testing such an attribute
    for equality can still be enforced by the proxy.

    Quota rules count as check rules: a listener may ask for quotas (its context extensions or the
    server's ``--authz-quota``) and a quota no rule builds is granted anyway, so only a quota rule
    that can fire needs the call.
    """
    static = StaticFacts(facts, varying)
    needs_check = False
    denials: list[Denial] = []
    for rule in config.rules:
        if not any(_variety(action) & {Variety.CHECK, Variety.QUOTA} for action in rule.actions):
            continue
        decided = _decide(rule.match, static)
        if decided is False:
            continue
        denial = _denial(rule, static, header_only or {}) if _denies(rule, static) else None
        if denial is None:
            needs_check = True
        else:
            denials.append(denial)
    if any(not denial.headers for denial in denials):
        return ListenerPolicy(check=False, deny=tuple(denials))
    return ListenerPolicy(check=needs_check, deny=tuple(denials))


def _variety(action: CompiledAction) -> set[Variety]:
    return {instance.template.variety for instance in action.instances}


def _decide(match: Expression | None, static: StaticFacts) -> bool | None:
    return True if match is None else match.decide(static)


def _denial(rule: CompiledRule, static: StaticFacts, header_only: Mapping[str, str]) -> Denial | None:
    """The rule as header tests on top of the fixed facts, or None when it needs more than that."""
    if rule.match is None:
        return Denial(rule.name)
    if rule.match.decide(static) is True:
        return Denial(rule.name)
    headers: list[tuple[str, str]] = []
    for conjunct in rule.match.conjuncts:
        try:
            if conjunct.evaluate(static):
                continue
            return None  # cannot happen for a rule that is not decided false; stay on ext_authz
        except UnknownValue:
            pass
        except EvaluationError:
            return None
        test = conjunct.equality
        header = header_only.get(test.attribute) if test else None
        # An empty value or the default itself would also hold without the header: not a header test.
        if test is None or header is None or test.value in ("", test.default):
            return None
        headers.append((header, test.value))
    return Denial(rule.name, tuple(headers)) if headers else None


def _denies(rule: CompiledRule, static: StaticFacts) -> bool:
    """The rule, when it fires, surely denies with 403: one of its actions is a denier answering 403
    whose instances are all built from fixed values (so the denier is called)."""
    for action in rule.actions:
        handler = action.handler
        if handler.adapter_name != "denier":
            continue
        status = getattr(handler.params, "status_code", OK)
        if status in _NOT_A_403:
            continue
        if all(_fixed(instance.fields, static) for instance in action.instances):
            return True
    return False


def _fixed(fields: Mapping[str, Any], static: StaticFacts) -> bool:
    """Every expression in an instance's field tree evaluates from the fixed facts alone."""
    for value in fields.values():
        if isinstance(value, Expression):
            try:
                value.evaluate(static)
            except (UnknownValue, EvaluationError):
                return False
        elif isinstance(value, Mapping) and not _fixed(value, static):
            return False
    return True
