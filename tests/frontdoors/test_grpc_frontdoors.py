"""The gRPC front doors in process: a real grpc.aio server and client on a free loopback port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import orjson
import pytest
from envoy.service.accesslog.v3 import als_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf import json_format

from tests.frontdoors.conftest import Mixer
from tests.frontdoors.test_envoy_attributes import REFERENCE, _lines

CHECK = "/envoy.service.auth.v3.Authorization/Check"
ALS = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs"
RLS = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"


def _check_request(source: str, destination: str, path: str = "/") -> external_auth_pb2.CheckRequest:
    request = json_format.Parse(json.dumps(_lines("ext_authz_check_requests.jsonl")[0]), external_auth_pb2.CheckRequest())
    request.attributes.request.http.headers["x-mixer-workload"] = source
    request.attributes.destination.labels["WORKLOAD_NAME"] = destination
    request.attributes.request.http.path = path
    return request


async def _authz(mixer: Mixer, request: external_auth_pb2.CheckRequest) -> external_auth_pb2.CheckResponse:
    raw = await mixer.unary(CHECK)(request.SerializeToString())
    return external_auth_pb2.CheckResponse.FromString(raw)


async def test_ext_authz_allows_and_denies_by_rule(mixer: Mixer) -> None:
    allowed = await _authz(mixer, _check_request("a-v1", "b-v1"))
    assert allowed.status.code == 0
    assert allowed.HasField("ok_response")
    denied = await _authz(mixer, _check_request("a-v1", "c-v1"))
    assert denied.status.code == 7
    assert denied.denied_response.status.code == 403
    assert "a-v1 may not call c-v1" in denied.denied_response.body


async def test_ext_authz_quota_from_context_extension_answers_429(mixer: Mixer) -> None:
    request = _check_request("a-v1", "b-v1", "/quota/x")
    request.attributes.context_extensions["mixer.quotas"] = "requestcount"
    codes = [(await _authz(mixer, request)).denied_response.status.code for _ in range(4)]
    assert codes == [0, 0, 0, 429]  # maxAmount 3


async def test_ext_authz_wrongly_typed_attribute_is_invalid_argument(mixer: Mixer) -> None:
    request = _check_request("a-v1", "b-v1")
    request.attributes.context_extensions["destination.port"] = "eighty"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _authz(mixer, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "destination.port" in (caught.value.details() or "")
    assert mixer.rejected("ext_authz") == 1


@pytest.mark.parametrize("method", [CHECK, RLS, "/mixer.v1.Mixer/Check"])
async def test_malformed_bytes_are_invalid_argument_and_server_keeps_serving(mixer: Mixer, method: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mixer.unary(method)(b"\xff\xff\xff\xff")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await _authz(mixer, _check_request("a-v1", "b-v1"))).status.code == 0


async def test_als_stream_reports_one_batch_per_message(mixer: Mixer) -> None:
    first = json_format.Parse((REFERENCE / "als_identifier_node.json").read_text(), als_pb2.StreamAccessLogsMessage())
    for entry in _lines("als_http_entries.jsonl"):
        json_format.ParseDict(entry, first.http_logs.log_entry.add())
    second = als_pb2.StreamAccessLogsMessage()
    second.http_logs.log_entry.add().CopyFrom(first.http_logs.log_entry[0])
    second.http_logs.log_entry[0].request.request_headers["x-mixer-workload"] = "frontend-v1"

    async def messages() -> AsyncIterator[bytes]:
        yield first.SerializeToString()
        yield second.SerializeToString()

    await mixer.channel.stream_unary(ALS)(messages())
    bags = mixer.bags()
    assert len(bags) == 4
    assert all(b["destination_workload"] == "productpage-v1" and b["reporter"] == "inbound" for b in bags)
    assert [b["path"] for b in bags] == ["/productpage", "/deny/secret", "/noauth", "/productpage"]
    assert bags[1]["code"] == 403 and bags[1]["error_code"] == "UAEX"
    assert bags[3]["source_workload"] == "frontend-v1"  # trusted peer header (option on)
    assert mixer.runtime.metrics.registry.get_sample_value("mixer_reports_total", {"front_door": "als"}) == 4


async def test_als_malformed_message_ends_stream_with_invalid_argument(mixer: Mixer) -> None:
    async def messages() -> AsyncIterator[bytes]:
        yield b"\xff\xff\xff\xff"

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mixer.channel.stream_unary(ALS)(messages())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert mixer.rejected("als") == 1


async def test_rls_over_limit_with_remaining(mixer: Mixer) -> None:
    request = rls_pb2.RateLimitRequest(domain="mixer")
    descriptor = request.descriptors.add()
    descriptor.entries.add(key="quota", value="ratelimit")
    descriptor.entries.add(key="request.path", value="/rl/items")
    answers = [rls_pb2.RateLimitResponse.FromString(await mixer.unary(RLS)(request.SerializeToString()))
               for _ in range(3)]
    assert [a.overall_code for a in answers] == [rls_pb2.RateLimitResponse.OK] * 2 + [rls_pb2.RateLimitResponse.OVER_LIMIT]
    assert [a.statuses[0].limit_remaining for a in answers] == [1, 0, 0]
    assert answers[0].statuses[0].duration_until_reset.seconds > 0


async def test_rls_reference_request_without_matching_rule_is_ok(mixer: Mixer) -> None:
    request = json_format.Parse(json.dumps(_lines("rls_requests.jsonl")[0]), rls_pb2.RateLimitRequest())
    request.descriptors[0].entries[2].value = "/other"
    answer = rls_pb2.RateLimitResponse.FromString(await mixer.unary(RLS)(request.SerializeToString()))
    assert answer.overall_code == rls_pb2.RateLimitResponse.OK
    assert len(answer.statuses) == 1


async def test_native_json_over_grpc(mixer: Mixer) -> None:
    check = mixer.unary("/mixer.v1.Mixer/Check")
    body = {"attributes": {"source.workload.name": "a-v1", "destination.workload.name": "c-v1"}}
    answer = orjson.loads(await check(orjson.dumps(body)))
    assert answer["status"]["code"] == 7
    report = mixer.unary("/mixer.v1.Mixer/Report")
    answer = orjson.loads(await report(orjson.dumps({"attributes": [{"request.path": "/n"}, {"request.path": "/m"}]})))
    assert answer["accepted"] == 2
    assert [b["path"] for b in mixer.bags()] == ["/n", "/m"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await check(orjson.dumps({"attributes": {"request.size": "big"}}))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request.size" in (caught.value.details() or "")
    assert mixer.rejected("native_grpc") == 1
