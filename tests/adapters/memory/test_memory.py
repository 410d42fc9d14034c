"""memory: the recording test double keeps what it receives, bounded, and can mirror it to a file."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import orjson

from adapters.memory import MemoryAdapter, MemoryHandler
from mixer.sdk import Env, Instance, MetricInstance
from mixer.selfmetrics import SelfMetrics


async def test_memory_records_and_writes_json_lines(tmp_path: Path) -> None:
    adapter = MemoryAdapter()
    path = tmp_path / "capture.jsonl"
    metrics = SelfMetrics()
    handler = adapter.build(adapter.parse_params({"path": str(path), "maxInstances": 2}),
                            Env("mem", logging.getLogger("test"), metrics), {})
    await handler.start()
    handler.handle_metric([MetricInstance("m", 1, ("a",))])
    handler.handle_logentry([Instance("l", "logentry", {"variables": {"at": dt.timedelta(seconds=1)}})] * 2)
    await handler.close()
    await handler.close()  # safe twice
    assert isinstance(handler, MemoryHandler)
    assert len(handler.instances) == 2
    assert metrics.registry.get_sample_value("mixer_dropped_instances_total",
                                             {"handler": "mem", "reason": "memory_full"}) == 1
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert lines[0] == {"name": "m", "template": "metric", "value": 1, "dimensions": ["a"]}
    assert lines[1]["fields"]["variables"]["at"] == "1s"
