"""The gRPC listener's limits with a real grpc.aio server: idle access log streams cannot starve
checks, silent streams are ended, and an oversized report is refused whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import orjson
import pytest
from envoy.service.accesslog.v3 import als_pb2
from google.protobuf import json_format

from mixer.frontdoors import FrontDoorOptions, Limits
from mixer.processes import free_port
from tests.frontdoors.conftest import Mixer, running_mixer
from tests.frontdoors.test_envoy_attributes import REFERENCE
from tests.frontdoors.test_grpc_frontdoors import ALS, _authz, _check_request

MAX_STREAMS = 4
MAX_RPCS = 8  # the server-wide backstop: the old limit idle streams used up


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[Mixer]:
    limits = Limits(max_streams=MAX_STREAMS, stream_idle_seconds=1.0, max_bags_per_request=10)
    options = FrontDoorOptions(port=free_port(), max_concurrent_rpcs=MAX_RPCS, limits=limits)
    async with running_mixer(tmp_path, options) as mixer:
        yield mixer


def _shed(mixer: Mixer, front_door: str, reason: str) -> float:
    value = mixer.runtime.metrics.registry.get_sample_value(
        "mixer_shed_requests_total", {"front_door": front_door, "reason": reason})
    return value or 0.0


async def test_idle_streams_past_the_limit_are_shed_and_checks_keep_answering(limited: Mixer) -> None:
    streams = [limited.channel.stream_unary(ALS)() for _ in range(3 * MAX_RPCS)]
    try:
        await asyncio.sleep(0.3)  # let the server take them all in
        checks = await asyncio.gather(*(_authz(limited, _check_request("a-v1", "b-v1")) for _ in range(20)))
        assert [c.status.code for c in checks] == [0] * 20
        ended = [s for s in streams if s.done()]
        assert len(ended) == len(streams) - MAX_STREAMS
        assert [await s.code() for s in ended] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * len(ended)
        assert _shed(limited, "als", "streams") == len(ended)
    finally:
        for stream in streams:
            stream.cancel()


async def test_a_silent_stream_is_ended_and_its_slot_freed(limited: Mixer) -> None:
    identifier = json_format.Parse((REFERENCE / "als_identifier_node.json").read_text(), als_pb2.StreamAccessLogsMessage())
    silent = [limited.channel.stream_unary(ALS)() for _ in range(MAX_STREAMS)]
    for stream in silent:
        await stream.write(identifier.SerializeToString())
    # idle for 1 s: each ends OK (Envoy opens a new stream when it next has logs)
    answers = await asyncio.wait_for(asyncio.gather(*silent), timeout=10)
    assert len(answers) == MAX_STREAMS
    assert [await s.code() for s in silent] == [grpc.StatusCode.OK] * MAX_STREAMS

    async def one_message() -> AsyncIterator[bytes]:
        yield identifier.SerializeToString()

    await limited.channel.stream_unary(ALS)(one_message())  # admitted again
    assert _shed(limited, "als", "streams") == 0


async def test_an_access_log_message_with_too_many_entries_is_refused(limited: Mixer) -> None:
    message = json_format.Parse((REFERENCE / "als_identifier_node.json").read_text(), als_pb2.StreamAccessLogsMessage())
    for _ in range(11):
        message.http_logs.log_entry.add()

    async def messages() -> AsyncIterator[bytes]:
        yield message.SerializeToString()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await limited.channel.stream_unary(ALS)(messages())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit is 10" in (caught.value.details() or "")
    assert limited.rejected("als") == 11


async def test_a_native_report_with_too_many_bags_is_refused(limited: Mixer) -> None:
    report = limited.unary("/mixer.v1.Mixer/Report")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await report(orjson.dumps({"attributes": [{}] * 11}))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit is 10" in (caught.value.details() or "")
    assert orjson.loads(await report(orjson.dumps({"attributes": [{}] * 10})))["accepted"] == 10
