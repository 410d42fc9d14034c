"""Which check rules can fire for a listener, decided from what is fixed before any request arrives.

A sidecar's inbound listener knows its own workload, namespace, labels and service: every Check it
sends carries them. Evaluating each check and quota rule's ``match`` against only those facts
(``Expression.decide``; every other attribute raises ``UnknownValue``) tells, exactly where it can,
whether the rule fires for every request there, for none, or depending on the request. From that:
whether the listener needs to call the mixer at all, and which rules deny it outright (so the proxy
can refuse those requests itself).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mixer.config import CompiledAction, CompiledConfig, CompiledRule
from mixer.expr import EvaluationError, Expression, UnknownValue
from mixer.sdk import OK, RESOURCE_EXHAUSTED, UNAUTHENTICATED
from mixer.templates import Variety

# Denier answers that Envoy's RBAC filter gives the same way (HTTP 403); 401 and 429 stay on ext_authz.
_NOT_A_403 = frozenset({OK, UNAUTHENTICATED, RESOURCE_EXHAUSTED})


class StaticFacts(Mapping[str, Any]):
    """The attributes fixed for a listener; any other attribute is ``UnknownValue``, never absent."""

    __slots__ = ("_known",)

    def __init__(self, known: Mapping[str, Any]) -> None:
        self._known = dict(known)

    def __getitem__(self, name: str) -> Any:
        try:
            return self._known[name]
        except KeyError:
            raise UnknownValue(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        return self[name]

    def __contains__(self, name: object) -> bool:
        if name in self._known:
            return True
        raise UnknownValue(str(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self._known)

    def __len__(self) -> int:
        return len(self._known)


@dataclass(frozen=True, slots=True)
class ListenerPolicy:
    """What a listener must do before serving a request.

    ``check``: some check or quota rule may fire, so it asks the mixer (ext_authz).
    ``deny``: rules that deny every request there (a denier answering 403 and nothing request-
    dependent about the rule); when there is one, every request is refused and nothing is asked.
    """

    check: bool
    deny: tuple[str, ...] = ()


def listener_policy(config: CompiledConfig, facts: Mapping[str, Any]) -> ListenerPolicy:
    """The policy of a listener whose Checks all carry ``facts``.

    Quota rules count as check rules: a listener may ask for quotas (its context extensions or the
    server's ``--authz-quota``) and a quota no rule builds is granted anyway, so only a quota rule
    that can fire needs the call.
    """
    static = StaticFacts(facts)
    needs_check = False
    denials: list[str] = []
    for rule in config.rules:
        if not any(_variety(action) & {Variety.CHECK, Variety.QUOTA} for action in rule.actions):
            continue
        decided = _decide(rule.match, static)
        if decided is False:
            continue
        if decided is True and _denies_all(rule, static):
            denials.append(rule.name)
        else:
            needs_check = True
    if denials:
        return ListenerPolicy(check=False, deny=tuple(denials))
    return ListenerPolicy(check=needs_check)


def _variety(action: CompiledAction) -> set[Variety]:
    return {instance.template.variety for instance in action.instances}


def _decide(match: Expression | None, static: StaticFacts) -> bool | None:
    return True if match is None else match.decide(static)


def _denies_all(rule: CompiledRule, static: StaticFacts) -> bool:
    """A rule that fires everywhere here denies every request when one of its actions is a denier
    answering 403 whose instances are all built from fixed values (so the denier is surely called)."""
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
