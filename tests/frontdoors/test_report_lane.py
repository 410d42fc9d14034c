"""Checks wait behind at most ``concurrent_reports`` report slices, not behind every report in flight.

Counted, not timed: how many report slices the runtime dispatched between a check's arrival and
its answer, with 20 large reports in flight on the same event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pytest

from mixer.attributes import Bag, default_manifest
from mixer.frontdoors import FrontDoorOptions, Limits, standard_doors
from mixer.frontdoors.native import NativeGrpcFrontDoor
from mixer.runtime import CheckResponse, combine
from mixer.sdk import QuotaArgs
from mixer.selfmetrics import SelfMetrics


class CountingRuntime:
    def __init__(self) -> None:
        self.manifest = default_manifest()
        self.metrics = SelfMetrics()
        self.ready = True
        self.batch_size = 128
        self.slices = 0

    def report(self, bags: Sequence[Bag], front_door: str) -> int:
        self.slices += 1
        return 0

    async def check(self, bag: Bag, quotas: Mapping[str, QuotaArgs], front_door: str) -> CheckResponse:
        # a check hands the loop over, as awaiting its handlers does; twice: each report slice is
        # mapped, the loop handed over, then dispatched
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return CheckResponse(combine([]), {})


async def _slices_before_a_check_is_answered(concurrent_reports: int) -> int:
    runtime = CountingRuntime()
    options = FrontDoorOptions(limits=Limits(concurrent_reports=concurrent_reports))
    door = next(d for d in standard_doors(runtime, options) if isinstance(d, NativeGrpcFrontDoor))
    report = orjson.dumps({"attributes": [{"request.path": "/x"}] * 128 * 50})  # 50 slices each
    context: Any = None
    reports = [asyncio.create_task(door.report(report, context)) for _ in range(20)]
    await asyncio.sleep(0)  # every report has started (or is waiting for the lane)
    await asyncio.sleep(0)
    before = runtime.slices
    await door.check(b'{"attributes": {}}', context)
    waited = runtime.slices - before
    await asyncio.gather(*reports)
    assert runtime.slices == 20 * 50
    return waited


@pytest.mark.parametrize("lane", [1, 2])
async def test_a_check_waits_behind_at_most_the_lane_of_report_slices(lane: int) -> None:
    assert await _slices_before_a_check_is_answered(lane) <= lane


async def test_without_the_lane_it_would_wait_behind_every_report() -> None:
    assert await _slices_before_a_check_is_answered(1000) >= 10  # the contrast the lane removes
