"""The core's own adapters: stdio (JSON lines), denier (fixed verdict), noop."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import orjson
import pytest

from adapters.denier import DenierAdapter
from adapters.noop import NoopAdapter
from adapters.stdio import StdioAdapter
from mixer.sdk import PERMISSION_DENIED, UNAUTHENTICATED, Env, Instance, InstanceSchema, MetricInstance, ParamsError
from mixer.selfmetrics import SelfMetrics


def env() -> Env:
    return Env("h.handler.ns", logging.getLogger("test"), SelfMetrics(), clock=lambda: 1_700_000_000.0)


async def test_stdio_writes_metrics_and_logs_as_json_lines(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    adapter = StdioAdapter()
    params = adapter.parse_params({"logStream": "FILE", "outputPath": str(out)})
    schema = InstanceSchema("rc.instance.ns", "metric", dimension_names=("code", "latency"))
    handler = adapter.build(params, env(), {"rc.instance.ns": schema})
    await handler.start()
    handler.handle_metric([MetricInstance("rc.instance.ns", 1, (200, dt.timedelta(milliseconds=5)))])
    handler.handle_logentry(
        [Instance("log.instance.ns", "logentry", {"severity": "Warning", "variables": {"path": "/a", "size": 3}})]
    )
    await handler.close()
    await handler.close()
    metric, log = [orjson.loads(line) for line in out.read_text().splitlines()]
    assert metric["instance"] == "rc.instance.ns"
    assert metric["dimensions"] == {"code": 200, "latency": "5ms"}
    assert metric["time"] == "2023-11-14T22:13:20Z"
    assert (log["level"], log["path"], log["size"]) == ("warning", "/a", 3)


async def test_stdio_counts_what_it_cannot_write() -> None:
    adapter = StdioAdapter()
    the_env = env()
    handler = adapter.build(adapter.parse_params({}), the_env, {})
    handler.handle_logentry([Instance("l", "logentry", {})])  # not started
    assert the_env.metrics.dropped_instances.labels("h.handler.ns", "not_started")._value.get() == 1


async def test_denier_answers_its_fixed_verdict() -> None:
    adapter = DenierAdapter()
    params = adapter.parse_params(
        {"status": {"code": UNAUTHENTICATED, "message": "who are you"}, "validDuration": "2.5s", "validUseCount": 7}
    )
    handler = adapter.build(params, env(), {})
    result = await handler.check_checknothing(Instance("n", "checknothing", {}))
    assert (result.status_code, result.message) == (UNAUTHENTICATED, "who are you")
    assert (result.valid_duration, result.valid_use_count) == (dt.timedelta(seconds=2.5), 7)
    default = await adapter.build(adapter.parse_params({}), env(), {}).check_listentry(Instance("l", "listentry", {}))
    assert default.status_code == PERMISSION_DENIED


def test_denier_lists_every_bad_param() -> None:
    with pytest.raises(ParamsError) as caught:
        DenierAdapter().parse_params({"status": {"code": 99}, "validDuration": "-1s", "validUseCount": -2, "x": 1})
    assert sorted(p for p, _ in caught.value.problems) == ["status.code", "validDuration", "validUseCount", "x"]


async def test_noop_accepts_everything() -> None:
    handler = NoopAdapter().build(None, env(), {})
    handler.handle_metric([MetricInstance("m", 1, ())])
    assert (await handler.check_authorization(Instance("a", "authorization", {}))).ok
