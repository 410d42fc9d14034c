"""The runtime: report batches through Istio's rules, checks combine, quotas, config swaps."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from mixer.config import DEFAULT_CONFIG_DIR, compile_config
from mixer.registry import AdapterRegistry
from mixer.runtime import Runtime, combine
from adapters.memory import MemoryHandler
from mixer.sdk import PERMISSION_DENIED, Adapter, CheckResult, Env, Handler, Instance, InstanceSchema, QuotaArgs

HEADER = "apiVersion: config.istio.io/v1alpha2\n"
MEMORY_AS_PROMETHEUS = HEADER + """kind: handler
metadata: {name: prometheus, namespace: istio-system}
spec: {compiledAdapter: memory}
"""


def istio_sources() -> list[tuple[str, str]]:
    telemetry = DEFAULT_CONFIG_DIR / "istio-telemetry.yaml"
    return [(str(telemetry), telemetry.read_text()), ("memory.yaml", MEMORY_AS_PROMETHEUS)]


async def runtime_for(*sources: tuple[str, str], registry: AdapterRegistry | None = None) -> Runtime:
    runtime = Runtime(registry=registry)
    await runtime.apply(compile_config(list(sources), runtime.registry))
    return runtime


def recorded(runtime: Runtime, handler: str = "prometheus.handler.istio-system") -> list[Any]:
    memory = runtime.snapshot.slots[handler].handler
    assert isinstance(memory, MemoryHandler)
    return list(memory.instances)


class _FakeAdapter(Adapter):
    """An adapter whose every handler is the one given: a fake put behind a config document."""

    def __init__(self, handler: Handler, templates: frozenset[str]) -> None:
        self.handler = handler
        self.templates = templates  # type: ignore[misc]  # per instance here, a ClassVar for real adapters

    def parse_params(self, raw: Mapping[str, Any]) -> Any:
        return raw  # whatever the real adapter's document says

    def build(self, params: Any, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        return self.handler


def named(runtime: Runtime, instance: Any) -> dict[str, Any]:
    names = runtime.snapshot.config.instances[instance.name].schema.dimension_names
    return dict(zip(names, instance.dimensions))


HTTP_BAG = {
    "context.protocol": "http",
    "context.reporter.kind": "outbound",
    "source.workload.name": "frontend-v1",
    "source.labels": {"app": "frontend", "version": "v1"},
    "destination.workload.name": "reviews-v2",
    "destination.service.name": "reviews",
    "request.host": "reviews:9080",
    "response.code": 503,
    "response.duration": dt.timedelta(milliseconds=250),
    "request.size": 120,
    "response.size": 4000,
    "connection.mtls": True,
}


async def test_istio_http_bag_builds_the_four_standard_metrics() -> None:
    runtime = await runtime_for(*istio_sources())
    assert runtime.report([HTTP_BAG]) == 4
    by_name = {i.name.split(".")[0]: i for i in recorded(runtime)}
    assert by_name["requestcount"].value == 1
    assert by_name["requestduration"].value == dt.timedelta(milliseconds=250)
    assert by_name["requestsize"].value == 120
    assert by_name["responsesize"].value == 4000
    dims = named(runtime, by_name["requestcount"])
    assert dims["reporter"] == "source"
    assert dims["source_workload"] == "frontend-v1"
    assert dims["source_app"] == "frontend"
    assert dims["destination_workload"] == "reviews-v2"
    assert dims["destination_app"] == "unknown"
    assert dims["destination_service"] == "reviews:9080"  # no host: falls back to request.host
    assert dims["response_code"] == 503
    assert dims["response_flags"] == "-"
    assert dims["request_protocol"] == "http"
    assert dims["connection_security_policy"] == "unknown"  # outbound reporter
    await runtime.close()


async def test_tcp_and_probe_traffic_follow_the_rules() -> None:
    runtime = await runtime_for(*istio_sources())
    bags = [
        {"context.protocol": "tcp", "connection.event": "open", "connection.sent.bytes": 10},
        {"context.protocol": "tcp", "connection.event": "close", "connection.received.bytes": 7},
        {"context.protocol": "http", "request.useragent": "kube-probe/1.29"},
    ]
    runtime.report(bags)
    names = sorted(i.name.split(".")[0] for i in recorded(runtime))
    assert names == sorted(
        ["tcpbytesent", "tcpbytereceived", "tcpconnectionsopened",
         "tcpbytesent", "tcpbytereceived", "tcpconnectionsclosed"]
    )
    await runtime.close()


async def test_an_evaluation_error_drops_one_instance_and_is_counted() -> None:
    config = HEADER + """kind: handler
metadata: {name: mem}
spec: {compiledAdapter: memory}
---
""" + HEADER + """kind: instance
metadata: {name: needs_path}
spec:
  compiledTemplate: metric
  params: {value: "1", dimensions: {path: request.path}}
---
""" + HEADER + """kind: instance
metadata: {name: always}
spec:
  compiledTemplate: metric
  params: {value: "1", dimensions: {code: response.code | 0}}
---
""" + HEADER + """kind: rule
metadata: {name: r}
spec:
  actions: [{handler: mem, instances: [needs_path, always]}]
"""
    runtime = await runtime_for(("c.yaml", config))
    runtime.report([{"request.path": "/a"}, {}, {"response.code": 200}])
    got = [(i.name.split(".")[0], i.dimensions) for i in recorded(runtime, "mem.handler.istio-system")]
    assert got == [("needs_path", ("/a",)), ("always", (0,)), ("always", (0,)), ("always", (200,))]
    errors = runtime.metrics.evaluation_errors.labels("needs_path.instance.istio-system")._value.get()
    assert errors == 2
    await runtime.close()


def test_combine_first_denial_wins_and_minimums_apply() -> None:
    allow = CheckResult(valid_duration=dt.timedelta(seconds=30), valid_use_count=50)
    deny_a = CheckResult(status_code=PERMISSION_DENIED, message="a", valid_duration=dt.timedelta(seconds=90))
    deny_b = CheckResult(status_code=PERMISSION_DENIED, message="b", valid_use_count=5)
    result = combine([allow, deny_a, deny_b])
    assert (result.status_code, result.message) == (PERMISSION_DENIED, "a")
    assert result.valid_duration == dt.timedelta(seconds=30)
    assert result.valid_use_count == 5


def test_combine_with_no_answers_is_ok_for_a_minute_and_10000_uses() -> None:
    result = combine([])
    assert result.ok
    assert (result.valid_duration, result.valid_use_count) == (dt.timedelta(minutes=1), 10000)


DENY_C = HEADER + """kind: handler
metadata: {name: deny}
spec:
  compiledAdapter: denier
  params: {status: {code: 7, message: "C is closed"}, validDuration: 5s, validUseCount: 3}
---
""" + HEADER + """kind: instance
metadata: {name: nothing}
spec: {compiledTemplate: checknothing}
---
""" + HEADER + """kind: rule
metadata: {name: deny-to-c}
spec:
  match: destination.workload.name == "c" && source.workload.name == "a"
  actions: [{handler: deny, instances: [nothing]}]
---
""" + HEADER + """kind: handler
metadata: {name: mem}
spec: {compiledAdapter: memory}
---
""" + HEADER + """kind: instance
metadata: {name: requestcount}
spec:
  compiledTemplate: quota
  params: {dimensions: {source: source.workload.name | "unknown"}}
---
""" + HEADER + """kind: rule
metadata: {name: quota}
spec:
  actions: [{handler: mem, instances: [requestcount]}]
"""


async def test_check_denies_a_to_c_and_allows_a_to_b() -> None:
    runtime = await runtime_for(("c.yaml", DENY_C))
    denied = await runtime.check({"source.workload.name": "a", "destination.workload.name": "c"})
    assert denied.result.status_code == PERMISSION_DENIED
    assert denied.result.message == "C is closed"
    assert denied.result.valid_duration == dt.timedelta(seconds=5)
    assert denied.result.valid_use_count == 3
    allowed = await runtime.check({"source.workload.name": "a", "destination.workload.name": "b"})
    assert allowed.result.ok
    assert allowed.result.valid_use_count == 10000
    await runtime.close()


async def test_quota_is_allocated_by_instance_name_in_any_form() -> None:
    runtime = await runtime_for(("c.yaml", DENY_C))
    bag = {"source.workload.name": "a"}
    for name in ("requestcount", "requestcount.istio-system", "requestcount.instance.istio-system"):
        response = await runtime.check(bag, {name: QuotaArgs(amount=3)})
        assert response.quotas[name].granted_amount == 3
    unknown = await runtime.check(bag, {"nosuchquota": QuotaArgs(amount=2)})
    assert unknown.quotas["nosuchquota"].granted_amount == 2  # no rule builds it: granted in full
    quota_instances = [i for i in recorded(runtime, "mem.handler.istio-system") if i.template == "quota"]
    assert quota_instances[0].fields == {"dimensions": {"source": "a"}}
    await runtime.close()


async def test_config_swap_keeps_unchanged_handlers_and_closes_removed_ones() -> None:
    runtime = await runtime_for(("c.yaml", DENY_C))
    mem = runtime.snapshot.slots["mem.handler.istio-system"]
    deny = runtime.snapshot.slots["deny.handler.istio-system"]
    without_deny = DENY_C.split("---\n", 3)[3]  # drop the denier handler, instance and rule
    await runtime.apply(compile_config([("c.yaml", without_deny)], AdapterRegistry()))
    assert runtime.snapshot.slots["mem.handler.istio-system"] is mem
    assert "deny.handler.istio-system" not in runtime.snapshot.slots
    allowed = await runtime.check({"source.workload.name": "a", "destination.workload.name": "c"})
    assert allowed.result.ok
    for _ in range(10):  # retirement runs as a task once in-flight checks drain
        if not deny.started:
            break
        await asyncio.sleep(0.01)
    assert deny.started is False
    await runtime.close()
    await runtime.close()  # safe twice


async def test_a_failing_report_handler_is_counted_not_raised() -> None:
    class Boom(Handler):
        def handle_metric(self, instances: Sequence[Any]) -> None:
            raise RuntimeError("backend down")

    telemetry = istio_sources()[0]
    boom_as_prometheus = ("boom.yaml", MEMORY_AS_PROMETHEUS.replace("memory", "boom"))
    registry = AdapterRegistry({"boom": _FakeAdapter(Boom(), frozenset({"metric"}))})
    runtime = await runtime_for(telemetry, boom_as_prometheus, registry=registry)
    slot = runtime.snapshot.slots["prometheus.handler.istio-system"]
    runtime.report([HTTP_BAG])
    dropped = runtime.metrics.dropped_instances.labels(slot.name, "handler_error")._value.get()
    assert dropped == 4


@pytest.mark.parametrize("bad", [{"response.code": "200"}, {"response.duration": 5}])
async def test_wrongly_typed_values_in_a_bag_never_break_the_batch(bad: dict[str, Any]) -> None:
    runtime = await runtime_for(*istio_sources())
    runtime.report([{**HTTP_BAG, **bad}, HTTP_BAG])  # must not raise; the good bag still counts
    assert len(recorded(runtime)) >= 4
    await runtime.close()


async def test_a_failing_check_handler_denies_with_internal_and_is_counted() -> None:
    class Broken(Handler):
        async def check_checknothing(self, instance: Instance) -> CheckResult:
            raise ConnectionError("policy backend unreachable")

    registry = AdapterRegistry({"denier": _FakeAdapter(Broken(), frozenset({"checknothing"}))})
    runtime = await runtime_for(("c.yaml", DENY_C), registry=registry)
    slot = runtime.snapshot.slots["deny.handler.istio-system"]
    response = await runtime.check({"source.workload.name": "a", "destination.workload.name": "c"})
    assert response.result.status_code == 13  # INTERNAL: a broken backend never silently allows
    assert "policy backend unreachable" in response.result.message
    assert runtime.metrics.registry.get_sample_value(
        "mixer_dispatch_errors_total", {"handler": slot.name, "adapter": "denier"}) == 1


async def test_a_handler_missing_a_template_method_fails_at_config_load() -> None:
    class Mute(Handler):
        pass  # claims metric below but has no handle_metric

    registry = AdapterRegistry({"mute": _FakeAdapter(Mute(), frozenset({"metric"}))})
    telemetry = istio_sources()[0]
    with pytest.raises(TypeError, match="serves template 'metric' but has no handle_metric"):
        await runtime_for(telemetry, ("mute.yaml", MEMORY_AS_PROMETHEUS.replace("memory", "mute")), registry=registry)


async def test_a_handler_without_room_gets_no_instances_built_only_counted() -> None:
    """A push handler whose queue is full (report_room 0) is told how many instances its rules
    matched (refuse_reports) instead of being handed instances built only to be dropped; a rule
    that also feeds a handler with room builds as usual."""

    class Full(Handler):
        def __init__(self) -> None:
            self.room: int | None = 0
            self.received: list[Any] = []
            self.refused: list[tuple[str, int]] = []

        def report_room(self, template: str) -> int | None:
            return self.room

        def refuse_reports(self, template: str, count: int) -> None:
            self.refused.append((template, count))

        def handle_metric(self, instances: Sequence[Any]) -> None:
            self.received += instances

    full = Full()
    telemetry = istio_sources()[0]
    full_as_prometheus = ("full.yaml", MEMORY_AS_PROMETHEUS.replace("memory", "full"))
    registry = AdapterRegistry({"full": _FakeAdapter(full, frozenset({"metric"}))})
    runtime = await runtime_for(telemetry, full_as_prometheus, registry=registry)
    probe = {**HTTP_BAG, "request.useragent": "kube-probe/1.29"}  # the rule does not match it
    assert runtime.report([HTTP_BAG, probe, HTTP_BAG]) == 8  # as many as would have been built
    assert full.received == [] and full.refused == [("metric", 2 * 4)]  # two matching bags, four metrics
    full.room = None
    assert runtime.report([HTTP_BAG]) == 4 and len(full.received) == 4
    await runtime.close()
