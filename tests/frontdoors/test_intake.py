"""The front doors' shared prologue: decode, map, reject each bad bag alone, report the rest in slices."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from envoy.service.auth.v3 import external_auth_pb2

from mixer.attributes import Bag, BagError, bag_from_json, default_manifest
from mixer.frontdoors.intake import BadRequest, decode_json, decode_proto, map_one, report_each
from mixer.runtime import CheckResponse
from mixer.sdk import QuotaArgs
from mixer.selfmetrics import SelfMetrics

MANIFEST = default_manifest()


class RecordingRuntime:
    """The RuntimeLike slice the prologue uses, recording each report call's bags."""

    def __init__(self, batch_size: int) -> None:
        self.manifest = MANIFEST
        self.metrics = SelfMetrics()
        self.ready = True
        self.batch_size = batch_size
        self.calls: list[list[Bag]] = []

    async def submit(self, bags: Sequence[Bag], front_door: str) -> int:
        self.calls.append(list(bags))
        return 2 * len(bags)

    async def check(self, bag: Bag, quotas: Mapping[str, QuotaArgs], front_door: str) -> CheckResponse:
        raise NotImplementedError  # the prologue never checks


async def test_each_bad_bag_is_rejected_alone_with_its_index_and_attribute() -> None:
    runtime = RecordingRuntime(batch_size=2)
    items: list[Any] = [{"response.code": 200}, {"response.code": "x"}, {}, {"request.size": []}, {"request.path": "/"}]
    outcome = await report_each(runtime, items, lambda item: bag_from_json(item, MANIFEST), "test", limit=100)
    assert [r.index for r in outcome.rejected] == [1, 3]
    assert "response.code" in outcome.rejected[0].error and "request.size" in outcome.rejected[1].error
    assert (outcome.accepted, outcome.instances) == (3, 6)
    # slices of batch_size items; a slice whose every item was bad makes no call
    assert [len(call) for call in runtime.calls] == [1, 1, 1]
    assert runtime.metrics.registry.get_sample_value("mixer_rejected_bags_total", {"front_door": "test"}) == 2
    with pytest.raises(BadRequest) as caught:
        outcome.raise_for_rejections()
    assert caught.value.uncounted == 0  # counted once, above
    assert caught.value.details["rejected"][1] == {"index": 3, "error": outcome.rejected[1].error}
    assert "bag 1: " in str(caught.value) and "bag 3: " in str(caught.value)


async def test_a_large_report_is_sliced_by_the_runtime_batch_size() -> None:
    runtime = RecordingRuntime(batch_size=128)
    outcome = await report_each(runtime, [{}] * 1000, lambda item: dict(item), "test", limit=1000)
    assert outcome.accepted == 1000
    assert [len(call) for call in runtime.calls] == [128] * 7 + [104]
    outcome.raise_for_rejections()  # nothing rejected: no error


def test_decoders_refuse_the_whole_request_with_a_clear_message() -> None:
    with pytest.raises(BadRequest, match="malformed CheckRequest"):
        decode_proto(external_auth_pb2.CheckRequest, b"\xff\xff\xff")
    with pytest.raises(BadRequest, match="bad JSON"):
        decode_json(b"{nope")
    assert decode_json(b'{"a": 1}') == {"a": 1}


def test_map_one_names_the_attribute() -> None:
    def build(raw: dict[str, Any]) -> Bag:
        if "response.duration" in raw:
            raise BagError("response.duration", "expected DURATION")
        return {}

    assert map_one(build, {}) == {}
    with pytest.raises(BadRequest, match="bad attribute: attribute .response.duration.") as caught:
        map_one(build, {"response.duration": 5})
    assert caught.value.uncounted == 1


def test_quota_verdict_is_decided_once_for_every_door() -> None:
    from mixer.sdk import CheckResult, QuotaResult

    requested = {"a": QuotaArgs(amount=2), "b": QuotaArgs(amount=1)}
    granted = {
        "a": QuotaResult(2, dt.timedelta(seconds=30), remaining=5, limit=10, window=dt.timedelta(minutes=1)),
        "b": QuotaResult(0, dt.timedelta(seconds=4), remaining=0),
    }
    response = CheckResponse(CheckResult(), granted, requested)
    verdict = response.quota_verdict()
    assert (verdict.exhausted, verdict.remaining, verdict.reset) == ("b", 0, dt.timedelta(seconds=4))
    assert verdict.limited is granted["a"]
    final = response.verdict()
    assert (final.status_code, final.http_status, final.message) == (8, 429, "quota b exhausted")
    denied = CheckResponse(CheckResult(status_code=7, message="no"), granted, requested)
    assert denied.verdict().message == "no"  # a check handler's denial comes first
    assert CheckResponse(CheckResult(), {"a": granted["a"]}, {"a": requested["a"]}).verdict().ok
