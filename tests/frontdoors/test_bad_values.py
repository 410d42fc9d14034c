"""A value that fails conversion rejects only its own bag, at every door, naming the attribute.

Blank, malformed and out-of-range durations and timestamps once escaped the per-bag rejection:
HTTP 500 and the whole batch lost; gRPC UNKNOWN; one bad access log entry ended the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
from envoy.service.accesslog.v3 import als_pb2
from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf import json_format

from mixer.attributes import BagError, default_manifest
from mixer.envoy_attributes import MappingOptions, http_entry_bag
from tests.frontdoors.conftest import Mixer
from tests.frontdoors.test_envoy_attributes import REFERENCE, _lines
from tests.frontdoors.test_grpc_frontdoors import ALS, RLS, _authz, _check_request

# (attribute, JSON value) pairs that once raised something other than BagError
BAD_JSON_VALUES = [
    ("response.duration", ""),
    ("response.duration", "   "),
    ("response.duration", "99999999999999999h"),
    ("response.duration", 1e300),
    ("request.time", "0001-01-01T00:00:00+05:00"),
    ("request.time", "9999-12-31T23:59:59-05:00"),
    ("request.time", ""),
]
BAD_TEXT_VALUES = [(name, value) for name, value in BAD_JSON_VALUES if isinstance(value, str)]


async def _post(mixer: Mixer, path: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.post(mixer.http_base + path, data=orjson.dumps(body),
                                headers={"Content-Type": "application/json"}) as reply:
            return reply.status, await reply.json(content_type=None)


@pytest.mark.parametrize(("name", "value"), BAD_JSON_VALUES)
async def test_http_report_rejects_only_the_bad_bag(mixer: Mixer, name: str, value: Any) -> None:
    bags = [{"request.path": "/good1"}, {name: value}, {"request.path": "/good2"}]
    status, body = await _post(mixer, "/v1/report", {"attributes": bags})
    assert status == 400, body
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1]
    assert name in body["rejected"][0]["error"]
    assert [b["path"] for b in mixer.bags()] == ["/good1", "/good2"]


@pytest.mark.parametrize(("name", "value"), BAD_JSON_VALUES)
async def test_http_check_with_a_bad_value_is_400_naming_it(mixer: Mixer, name: str, value: Any) -> None:
    status, body = await _post(mixer, "/v1/check", {"attributes": {name: value}})
    assert status == 400, body
    assert name in body["error"]


@pytest.mark.parametrize(("name", "value"), BAD_JSON_VALUES)
async def test_native_grpc_report_rejects_only_the_bad_bag(mixer: Mixer, name: str, value: Any) -> None:
    report = mixer.unary("/mixer.v1.Mixer/Report")
    body = {"attributes": [{"request.path": "/good1"}, {name: value}, {"request.path": "/good2"}]}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await report(orjson.dumps(body))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert name in (caught.value.details() or "") and "bag 1" in (caught.value.details() or "")
    assert [b["path"] for b in mixer.bags()] == ["/good1", "/good2"]


@pytest.mark.parametrize(("name", "value"), BAD_TEXT_VALUES)
async def test_ext_authz_context_extension_is_invalid_argument(mixer: Mixer, name: str, value: str) -> None:
    request = _check_request("a-v1", "b-v1")
    request.attributes.context_extensions[name] = value
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _authz(mixer, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert name in (caught.value.details() or "")
    assert (await _authz(mixer, _check_request("a-v1", "b-v1"))).status.code == 0


async def test_ext_authz_request_time_out_of_range_is_invalid_argument(mixer: Mixer) -> None:
    request = _check_request("a-v1", "b-v1")
    request.attributes.request.time.seconds = 10**15
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _authz(mixer, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(("name", "value"), BAD_TEXT_VALUES)
async def test_rls_descriptor_is_invalid_argument(mixer: Mixer, name: str, value: str) -> None:
    request = rls_pb2.RateLimitRequest(domain="mixer")
    descriptor = request.descriptors.add()
    descriptor.entries.add(key="quota", value="ratelimit")
    descriptor.entries.add(key=name, value=value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mixer.unary(RLS)(request.SerializeToString())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert name in (caught.value.details() or "")


def _als_message(paths: list[str]) -> als_pb2.StreamAccessLogsMessage:
    message = json_format.Parse((REFERENCE / "als_identifier_node.json").read_text(), als_pb2.StreamAccessLogsMessage())
    template = _lines("als_http_entries.jsonl")[0]
    for path in paths:
        entry = message.http_logs.log_entry.add()
        json_format.ParseDict(template, entry)
        entry.request.path = path
    return message


@pytest.mark.parametrize("spoil", ["start_time", "duration", "custom_tag"])
async def test_als_bad_entry_is_dropped_alone_and_the_stream_goes_on(mixer: Mixer, spoil: str) -> None:
    first = _als_message(["/good1", "/bad", "/good2"])
    common = first.http_logs.log_entry[1].common_properties
    if spoil == "start_time":
        common.start_time.seconds = 10**15
    elif spoil == "duration":
        common.ClearField("time_to_last_downstream_tx_byte")
        common.duration.seconds = 10**15
    else:
        common.custom_tags["response.duration"] = ""
    second = als_pb2.StreamAccessLogsMessage()
    second.http_logs.log_entry.add().CopyFrom(first.http_logs.log_entry[0])
    second.http_logs.log_entry[0].request.path = "/after"

    async def messages() -> AsyncIterator[bytes]:
        yield first.SerializeToString()
        yield second.SerializeToString()

    await mixer.channel.stream_unary(ALS)(messages())  # the stream ends OK, not with UNKNOWN
    assert [b["path"] for b in mixer.bags()] == ["/good1", "/good2", "/after"]
    assert mixer.rejected("als") == 1



@pytest.mark.parametrize(("spoil", "attribute"), [
    ("start_time", "request.time"),
    ("duration", "response.duration"),
    ("late_start", "response.time"),
])
def test_an_out_of_range_protobuf_time_names_its_attribute(spoil: str, attribute: str) -> None:
    entry = _als_message(["/x"]).http_logs.log_entry[0]
    common = entry.common_properties
    common.ClearField("time_to_last_downstream_tx_byte")
    if spoil == "start_time":
        common.start_time.seconds = 10**15
    elif spoil == "duration":
        common.duration.seconds = -(10**15)
    else:  # each in range, their sum is not
        common.start_time.seconds = 253402300799  # 9999-12-31T23:59:59Z
        common.duration.seconds = 86400
    with pytest.raises(BagError) as caught:
        http_entry_bag(entry, {}, "inbound", default_manifest(), MappingOptions())
    assert caught.value.attribute == attribute
