"""Compile a rule's instances into one evaluation plan: each distinct expression is evaluated once
per bag, and instances are assembled from the shared values by index.

Most of Istio's expressions are ``attribute | constant``: those take the first value slots and are
evaluated together as ``map(bag.get, lookup_names, lookup_fallbacks)``, with no Python call each;
``map["key"] | constant`` ones come next, also evaluated in C (``map(dict.get, maps, map_keys,
map_fallbacks)``); the other expressions' closures fill the slots after them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import call, itemgetter
from typing import Any

from mixer.config import CompiledInstance
from mixer.expr import Expression
from mixer.sdk import Instance, MetricInstance

Values = list[Any]
Evaluator = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Output:
    """One instance the plan builds for one handler: ``make(values)`` assembles it."""

    sink: int  # index of the (handler, template) sink it goes to
    instance: str
    uses: frozenset[int]  # value indices it needs; a failed one drops just this instance
    make: Callable[[Values], Any]


@dataclass(frozen=True, slots=True)
class RulePlan:
    """Values of a bag, in slot order: ``map(bag.get, lookup_names, lookup_fallbacks)``, then
    ``map(dict.get, map(bag.get, map_names, repeat({})), map_keys, map_fallbacks)``, then one value per
    ``evaluators_fast`` closure. ``evaluators`` are the guarded closures of every slot after the lookups
    (map lookups included), for the slow path."""

    rule: str
    match: Evaluator | None
    lookup_names: tuple[str, ...]
    lookup_fallbacks: tuple[Any, ...]
    # ``dict.get`` over the maps, not a ``methodcaller`` per key (a bound method and an argument tuple
    # per call: twice the cost). A map value that is not a dict makes it raise: the slow path then
    # evaluates the guarded closures, which read any mapping.
    map_names: tuple[str, ...]
    map_keys: tuple[str, ...]
    map_fallbacks: tuple[Any, ...]
    evaluators: tuple[Evaluator, ...]
    outputs: tuple[Output, ...]
    # The same closures without their exception guards (``Expression.evaluate_unguarded``): the hot
    # path runs these under one try, and on any exception falls back to the guarded ones above.
    match_fast: Evaluator | None
    evaluators_fast: tuple[Evaluator, ...]


class _ValueTable:
    """Deduplicates expressions across a rule's instances by their text, and numbers them: lookups
    first. Every expression is offered once (``slot`` returns -1) before ``freeze``; after it,
    ``slot`` gives each its final index."""

    def __init__(self) -> None:
        self.expressions: dict[str, Expression] = {}
        self.index: dict[str, int] | None = None

    def slot(self, expression: Expression) -> int:
        if self.index is None:
            self.expressions.setdefault(expression.text, expression)
            return -1
        return self.index[expression.text]

    def freeze(self) -> tuple[list[Expression], list[Expression], list[Expression]]:
        """The expressions in slot order: lookups, map lookups, the others."""
        every = self.expressions.values()
        lookups = [e for e in every if e.lookup is not None]
        map_lookups = [e for e in every if e.lookup is None and e.map_lookup is not None]
        others = [e for e in every if e.lookup is None and e.map_lookup is None]
        self.index = {e.text: i for i, e in enumerate(lookups + map_lookups + others)}
        return lookups, map_lookups, others


def build_plan(
    rule: str, match: Expression | None, routes: Sequence[tuple[int, CompiledInstance]]
) -> RulePlan:
    """``routes`` pairs a sink index with an instance to build for it."""
    table = _ValueTable()
    for sink, instance in routes:  # first pass: collect the expressions, so they can be numbered
        _output(sink, instance, table)
    lookups, map_lookups, others = table.freeze()
    outputs = tuple(_output(sink, instance, table) for sink, instance in routes)
    gets = [e.lookup for e in lookups if e.lookup is not None]
    map_gets = [e.map_lookup for e in map_lookups if e.map_lookup is not None]
    return RulePlan(
        rule,
        match.evaluate if match else None,
        tuple(name for name, _ in gets),
        tuple(fallback for _, fallback in gets),
        tuple(name for name, _, _ in map_gets),
        tuple(key for _, key, _ in map_gets),
        tuple(fallback for _, _, fallback in map_gets),
        tuple(e.evaluate for e in map_lookups + others),
        outputs,
        _fast(match) if match else None,
        tuple(_fast(e) for e in others),
    )


def _fast(expression: Expression) -> Evaluator:
    return expression.evaluate_unguarded or expression.evaluate


# NamedTuple construction through its generated ``__new__`` is a Python call per instance; the
# plan knows it passes every field, so it builds the tuple in C.
_new_tuple = tuple.__new__


def _output(sink: int, instance: CompiledInstance, table: _ValueTable) -> Output:
    if instance.template.name == "metric":
        return _metric_output(sink, instance, table)
    uses: set[int] = set()
    fill = _filler(_shape(instance.fields, table, uses))
    name, template = instance.name, instance.template.name

    def make(values: Values) -> Instance:
        return _new_tuple(Instance, (name, template, fill(values)))

    return Output(sink, name, frozenset(uses), make)


def _metric_output(sink: int, instance: CompiledInstance, table: _ValueTable) -> Output:
    fields = instance.fields
    name = instance.name
    value_expr = fields.get("value")
    value_index = table.slot(value_expr) if value_expr is not None else -1
    dims = [table.slot(e) for e in fields.get("dimensions", {}).values()]
    resource = [table.slot(e) for e in fields.get("monitored_resource_dimensions", {}).values()]
    get_dims, get_resource = _tuple_getter(dims), _tuple_getter(resource)
    uses = frozenset([*dims, *resource, *([value_index] if value_index >= 0 else [])])

    if value_index < 0:

        def make(values: Values) -> MetricInstance:
            return _new_tuple(MetricInstance, (name, None, get_dims(values), get_resource(values)))

    elif not resource:  # Istio's metrics: no resource dimensions, so no call to get none

        def make(values: Values) -> MetricInstance:
            return _new_tuple(MetricInstance, (name, values[value_index], get_dims(values), ()))

    else:

        def make(values: Values) -> MetricInstance:
            return _new_tuple(MetricInstance, (name, values[value_index], get_dims(values), get_resource(values)))

    return Output(sink, name, uses, make)


def _tuple_getter(indices: Sequence[int]) -> Callable[[Values], tuple[Any, ...]]:
    if not indices:
        return lambda values: ()
    if len(indices) == 1:
        only = indices[0]
        return lambda values: (values[only],)
    return itemgetter(*indices)


def _shape(fields: dict[str, Any], table: _ValueTable, uses: set[int]) -> dict[str, Any]:
    """Replace each Expression in a field tree by its value index."""
    shape: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, Expression):
            shape[key] = table.slot(value)
            uses.add(shape[key])
        else:
            shape[key] = _shape(value, table, uses)
    return shape


def _filler(shape: dict[str, Any]) -> Callable[[Values], dict[str, Any]]:
    """The function filling ``shape`` (key -> value index, or a nested shape) from the values, keys in
    shape order. A flat map (a logentry's variables) is one ``dict(zip(keys, itemgetter(...)))``."""
    keys = tuple(shape)
    if all(isinstance(i, int) for i in shape.values()):
        get_all = _tuple_getter(list(shape.values()))
        return lambda values: dict(zip(keys, get_all(values)))
    parts = [itemgetter(i) if isinstance(i, int) else _filler(i) for i in shape.values()]
    # ``map(call, ...)`` calls the parts from C: a list comprehension is one more Python call.
    return lambda values: dict(zip(keys, map(call, parts, repeat(values))))

