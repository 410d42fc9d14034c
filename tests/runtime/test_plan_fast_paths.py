"""The plan's fast paths give what the guarded closures give: 'attribute | constant' lookups run
together, the other closures unguarded under one try, with the guarded slow path on any failure."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixer.attributes import default_manifest
from mixer.expr import EvaluationError, compile_expression
from tests.runtime.test_runtime import HEADER, recorded, runtime_for

MANIFEST = default_manifest()


@pytest.mark.parametrize(
    ("text", "fallback"),
    [
        ('request.host | "x"', "x"),
        ("response.code | 200", 200),
        ('response.duration | "0ms"', dt.timedelta(0)),
        ('source.ip | ip("0.0.0.0")', ipaddress.ip_address("0.0.0.0")),
        ("(connection.mtls | false)", False),
    ],
)
def test_an_attribute_or_constant_is_exactly_a_get(text: str, fallback: Any) -> None:
    expr = compile_expression(text, MANIFEST)
    assert expr.lookup is not None
    name, got_fallback = expr.lookup
    assert got_fallback == fallback and type(got_fallback) is type(fallback)
    for bag in ({}, {name: fallback}, {"other": 1}):
        assert expr.evaluate(bag) == bag.get(name, got_fallback)
    present = {"request.host": "h", "response.code": 503, "response.duration": dt.timedelta(seconds=1),
               "source.ip": ipaddress.ip_address("10.0.0.1"), "connection.mtls": True}
    assert expr.evaluate(present) == present.get(name, got_fallback) == present[name]


@pytest.mark.parametrize(
    "text",
    [
        "request.host",  # no default: absent is an error, not a fallback
        'source.labels["app"] | "unknown"',  # a map lookup, not a bag get
        'request.host | request.path | ""',  # two attributes
        "request.headers | emptyStringMap()",  # a map constant is handed out fresh each time
        'conditional(connection.mtls | false, "a", "b")',
    ],
)
def test_other_shapes_are_not_lookups(text: str) -> None:
    assert compile_expression(text, MANIFEST).lookup is None


@pytest.mark.parametrize(
    ("text", "fallback"),
    [('source.labels["app"] | "unknown"', "unknown"), ('request.headers[":authority"] | ""', "")],
)
def test_a_map_key_or_constant_is_exactly_a_get_on_the_map(text: str, fallback: Any) -> None:
    expr = compile_expression(text, MANIFEST)
    assert expr.lookup is None and expr.map_lookup is not None
    name, key, got_fallback = expr.map_lookup
    assert got_fallback == fallback
    for bag in ({}, {name: {}}, {name: {key: "v"}}, {name: {"other": "w"}}):
        expected = bag[name].get(key, got_fallback) if name in bag else got_fallback
        assert expr.evaluate(bag) == expected


def test_unguarded_gives_the_same_value_and_raises_where_the_guard_names_the_expression() -> None:
    expr = compile_expression('source.labels["app"] | "unknown"', MANIFEST)
    assert expr.evaluate_unguarded is not None
    good = {"source.labels": {"app": "a"}}
    assert expr.evaluate_unguarded(good) == expr.evaluate(good) == "a"
    ill_typed = {"source.labels": 5}  # not a map: the bag does not fit the manifest
    with pytest.raises(AttributeError):
        expr.evaluate_unguarded(ill_typed)
    with pytest.raises(EvaluationError, match="source.labels"):
        expr.evaluate(ill_typed)


CONFIG = HEADER + """kind: handler
metadata: {name: mem}
spec: {compiledAdapter: memory}
---
""" + HEADER + """kind: instance
metadata: {name: mixed}
spec:
  compiledTemplate: metric
  params:
    value: response.size | 0
    dimensions:
      app: source.labels["app"] | "unknown"
      code: response.code | 200
      reporter: conditional((context.reporter.kind | "inbound") == "outbound", "source", "destination")
      host: request.host | "none"
---
""" + HEADER + """kind: instance
metadata: {name: plain}
spec:
  compiledTemplate: metric
  params: {value: "1", dimensions: {code: response.code | 200}}
---
""" + HEADER + """kind: instance
metadata: {name: log}
spec:
  compiledTemplate: logentry
  params:
    severity: '"Info"'
    variables:
      b: request.host | "none"
      a: source.labels["app"] | "unknown"
      c: response.code | 0
---
""" + HEADER + """kind: rule
metadata: {name: r}
spec:
  match: (source.labels["tier"] | "") != "probe"
  actions: [{handler: mem, instances: [mixed, plain, log]}]
"""


async def test_lookups_and_closures_land_in_the_right_fields() -> None:
    runtime = await runtime_for(("c.yaml", CONFIG))
    plan = runtime.snapshot.report_plans[0]
    assert set(plan.lookup_names) == {"response.size", "response.code", "request.host"}
    assert plan.map_names == ("source.labels",)  # source.labels["app"] | "unknown", once for both instances
    runtime.report([
        {"source.labels": {"app": "web"}, "response.code": 503, "response.size": 7, "request.host": "h",
         "context.reporter.kind": "outbound"},
        {},
        {"source.labels": {"tier": "probe"}},  # the rule does not match
    ])
    got = [(i.name.split(".")[0], getattr(i, "dimensions", None) or i.fields) for i in recorded(runtime, "mem.handler.istio-system")]
    assert got == [  # the handler is called once per template: the metrics of the batch, then its logs
        ("mixed", ("web", 503, "source", "h")),
        ("plain", (503,)),
        ("mixed", ("unknown", 200, "destination", "none")),
        ("plain", (200,)),
        ("log", {"severity": "Info", "variables": {"b": "h", "a": "web", "c": 503}}),
        ("log", {"severity": "Info", "variables": {"b": "none", "a": "unknown", "c": 0}}),
    ]
    logs = [i for i in recorded(runtime, "mem.handler.istio-system") if not hasattr(i, "value")]
    assert [list(i.fields["variables"]) for i in logs] == [["b", "a", "c"]] * 2  # the config's order
    values = [i.value for i in recorded(runtime, "mem.handler.istio-system") if hasattr(i, "value")]
    assert values == [7, 1, 0, 1]
    # the plan builds the NamedTuples with tuple.__new__: every field must be there, as the class makes them
    for built in recorded(runtime, "mem.handler.istio-system"):
        assert built == type(built)(*built) and len(built) == len(type(built)._fields)
    await runtime.close()


async def test_an_ill_typed_value_fails_only_the_instances_that_read_it_and_is_counted() -> None:
    runtime = await runtime_for(("c.yaml", CONFIG))
    # source.labels is not a map: the match fails (counted for the rule), nothing is built
    runtime.report([{"source.labels": 5, "response.code": 1}])
    assert recorded(runtime, "mem.handler.istio-system") == []
    assert runtime.metrics.evaluation_errors.labels("r.rule.istio-system")._value.get() == 1
    # a labels map whose lookup of "app" fails: only the instances reading it are lost. Not a dict:
    # the fast path reads maps with dict.get, so any other mapping takes the guarded slow path.
    class Labels(Mapping[str, str]):
        def __getitem__(self, key: str) -> str:
            raise KeyError(key)

        def __iter__(self) -> Iterator[str]:
            return iter(())

        def __len__(self) -> int:
            return 0

        def get(self, key: str, default: Any = None) -> Any:
            if key == "app":
                raise TypeError("broken map")
            return default

    runtime.report([{"source.labels": Labels(), "response.code": 2}])
    got = [i.name.split(".")[0] for i in recorded(runtime, "mem.handler.istio-system")]
    assert got == ["plain"]  # mixed and log read source.labels["app"]; plain does not
    for instance in ("mixed", "log"):
        assert runtime.metrics.evaluation_errors.labels(f"{instance}.instance.istio-system")._value.get() == 1
    await runtime.close()


MAP_CONFIG = HEADER + """kind: handler
metadata: {name: mem}
spec: {compiledAdapter: memory}
---
""" + HEADER + """kind: instance
metadata: {name: maps}
spec:
  compiledTemplate: logentry
  params:
    severity: '"Info"'
    variables:
      app: source.labels["app"] | "unknown"
      version: source.labels["version"] | "none"
      host: request.headers[":authority"] | ""
      peer: destination.labels["app"] | "unknown"
---
""" + HEADER + """kind: rule
metadata: {name: r}
spec:
  actions: [{handler: mem, instances: [maps]}]
"""
_TEXT = st.sampled_from(["", "a", "web", "v1", "x"])
_MAP = st.dictionaries(st.sampled_from(["app", "version", ":authority", "other"]), _TEXT, max_size=4)
_BAG = st.fixed_dictionaries({}, optional={"source.labels": _MAP, "request.headers": _MAP, "destination.labels": _MAP})


@settings(max_examples=200, deadline=None)
@given(bags=st.lists(_BAG, min_size=1, max_size=5))
def test_map_lookups_on_the_fast_path_give_what_the_closures_give(bags: list[dict[str, Any]]) -> None:
    async def run() -> None:
        runtime = await runtime_for(("c.yaml", MAP_CONFIG))
        instance = runtime.snapshot.config.instances["maps.instance.istio-system"]
        runtime.report(bags)
        got = [i.fields["variables"] for i in recorded(runtime, "mem.handler.istio-system")]
        variables = instance.fields["variables"]
        assert got == [{name: e.evaluate(bag) for name, e in variables.items()} for bag in bags]
        await runtime.close()

    asyncio.run(run())
