"""The stdio adapter: metrics and log entries as JSON lines on a stream or a file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson

from adapters.stdio import StdioAdapter
from mixer.sdk import Instance, InstanceSchema, MetricInstance
from tests.adapters.support import env


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


async def test_a_log_line_leads_with_level_time_instance_then_the_variables_sorted(tmp_path: Path) -> None:
    """Mixer's line shape, byte for byte: the leading keys, then every variable by name; values orjson
    cannot write itself (IPs, durations) as their text; a variable named like a leading key takes
    its place instead of repeating it."""
    import ipaddress

    out = tmp_path / "out.jsonl"
    adapter = StdioAdapter()
    handler = adapter.build(adapter.parse_params({"logStream": "FILE", "outputPath": str(out)}), env(), {})
    await handler.start()
    at = dt.datetime(2026, 11, 26, 6, 22, 34, 779880, tzinfo=dt.timezone.utc)
    handler.handle_logentry([
        Instance("accesslog.instance.istio-system", "logentry", {"severity": "Info", "timestamp": at, "variables": {
            "url": "/a", "sourceIp": ipaddress.ip_address("10.0.0.1"), "latency": dt.timedelta(microseconds=9820),
            "responseCode": 200, "apiKey": "", "labels": {"b": "2", "a": "1"}}}),
        Instance("empty.instance.ns", "logentry", {"severity": "Error", "timestamp": at}),
        Instance("odd.instance.ns", "logentry", {"timestamp": at, "variables": {"time": "mine", "zone": "z"}}),
    ])
    await handler.close()
    assert out.read_bytes().splitlines() == [
        b'{"level":"info","time":"2026-11-26T06:22:34.779880Z","instance":"accesslog.instance.istio-system",'
        b'"apiKey":"","labels":{"a":"1","b":"2"},"latency":"9.82ms","responseCode":200,"sourceIp":"10.0.0.1",'
        b'"url":"/a"}',
        b'{"level":"error","time":"2026-11-26T06:22:34.779880Z","instance":"empty.instance.ns"}',
        b'{"level":"info","time":"mine","instance":"odd.instance.ns","zone":"z"}',
    ]
