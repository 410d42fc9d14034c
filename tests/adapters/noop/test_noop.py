"""The noop adapter: accepts every template and does nothing (the benchmarks' baseline)."""

from __future__ import annotations

from adapters.noop import NoopAdapter
from mixer.sdk import Instance, MetricInstance
from tests.adapters.support import env


async def test_noop_accepts_everything() -> None:
    handler = NoopAdapter().build(None, env(), {})
    handler.handle_metric([MetricInstance("m", 1, ())])
    assert (await handler.check_authorization(Instance("a", "authorization", {}))).ok
