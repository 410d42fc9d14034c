"""The otlp handler against a loopback OTLP receiver (real gRPC and HTTP servers) that fails on purpose."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from adapters.otlp import OtlpAdapter, OtlpHandler
from adapters.otlp.convert import rewritten_client_id
from mixer.sdk import Env, Instance
from tests.adapters.otlp.receiver import Failure, Receiver
from tests.adapters.support import env

START = dt.datetime(2026, 11, 26, 12, 0, 0, 250_000, tzinfo=dt.timezone.utc)
FAST = {"batchTimeout": "0s", "retry": {"initialInterval": "10ms", "maxInterval": "50ms", "maxElapsedTime": "10s"}}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _handler(params: dict[str, Any], the_env: Env | None = None) -> OtlpHandler:
    adapter = OtlpAdapter()
    handler = adapter.build(adapter.parse_params({"delivery": FAST, **params}), the_env or env(), {})
    assert isinstance(handler, OtlpHandler)
    await handler.start()
    return handler


def span(trace: str = "0af7651916cd43dd8448eb211c80319c", span_id: str = "b7ad6b7169203331", parent: str = "",
         client: bool = False, code: int = 200, **tags: Any) -> Instance:
    return Instance("span.instance.istio-system", "tracespan", {
        "trace_id": trace, "span_id": span_id, "parent_span_id": parent, "span_name": "GET /hello",
        "start_time": START, "end_time": START + dt.timedelta(milliseconds=12), "client_span": client,
        "rewrite_client_span_id": False, "http_status_code": code, "source_name": "a-v1", "destination_name": "b-v1",
        "source_ip": ipaddress.ip_address("10.0.0.1"), "destination_ip": ipaddress.ip_address("0.0.0.0"),
        "request_size": 0, "response_size": 39, "api_protocol": "http",
        "span_tags": {"tracer": {"http.url": "http://b/hello", "empty": "", "source.workload.name": "spoof"},
                      "source.workload.name": "a-v1",
                      "request.id": "", **tags},
    })


def attributes(otlp_span: trace_pb2.Span) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in otlp_span.attributes:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


def dropped(the_env: Env, reason: str) -> float:
    value = the_env.metrics.registry.get_sample_value(
        "mixer_dropped_instances_total", {"handler": the_env.handler_name, "reason": reason})
    return value or 0.0


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_spans_arrive_as_opentelemetry_describes_them(receiver: Receiver, protocol: str) -> None:
    endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
    handler = await _handler({"protocol": protocol, "endpoint": endpoint, "compression": "gzip",
                              "headers": {"x-tenant": "demo"}})
    handler.handle_tracespan([
        span(client=True, code=403, **{"service.name": "a"}),
        span(span_id="00f067aa0ba902b7", parent="b7ad6b7169203331", code=403, **{"span.kind": "server"}),
        span(span_id="1111111111111111", code=503, **{"otel.status_code": "ERROR", "otel.status_description": "boom"}),
    ])
    await handler.queue.flush()
    await handler.close()
    received = receiver.spans()
    assert len(received) == 3
    (client_resource, client), (server_resource, server), (_, failed) = received
    assert client_resource == {"service.name": "a"}
    assert server_resource == {"service.name": "b-v1"}  # a server span's service: the destination's
    assert client.kind == trace_pb2.Span.SPAN_KIND_CLIENT and server.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert client.trace_id.hex() == server.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c"
    assert server.parent_span_id == client.span_id == bytes.fromhex("b7ad6b7169203331")
    # OpenTelemetry's HTTP conventions: 4xx is an error on a client span only, 5xx on both
    assert client.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert server.status.code == trace_pb2.Status.STATUS_CODE_UNSET
    assert (failed.status.code, failed.status.message) == (trace_pb2.Status.STATUS_CODE_ERROR, "boom")
    assert client.start_time_unix_nano == 1_795_694_400_250_000_000
    assert client.end_time_unix_nano - client.start_time_unix_nano == 12_000_000
    found = attributes(client)
    assert found["http.response.status_code"] == 403
    assert found["http.response.body.size"] == 39 and found["http.request.body.size"] == 0
    assert found["client.address"] == "10.0.0.1" and "server.address" not in found  # 0.0.0.0 is no address
    assert found["http.url"] == "http://b/hello" and "empty" not in found and "request.id" not in found
    assert found["peer.service"] == "b-v1" and found["source.workload.name"] == "a-v1"
    assert [kv.key for kv in client.attributes].count("source.workload.name") == 1  # keys stay unique
    assert found["network.protocol.name"] == "http"
    assert not {"service.name", "span.kind", "otel.status_code"} & set(found)
    assert all(m.get("x-tenant") == "demo" for m in receiver.metadata)
    if protocol == "http":
        assert receiver.metadata[0]["Content-Encoding"] == "gzip"


async def test_rewrite_client_span_id_links_the_server_span_under_the_client(receiver: Receiver) -> None:
    handler = await _handler({"endpoint": receiver.grpc_endpoint})
    shared = span(client=True)
    handler.handle_tracespan([
        Instance(shared.name, shared.template, {**shared.fields, "rewrite_client_span_id": True}),
        Instance(shared.name, shared.template, {**span().fields, "rewrite_client_span_id": True}),
    ])
    await handler.close()
    (_, client), (_, server) = receiver.spans()
    assert client.span_id == rewritten_client_id(bytes.fromhex("b7ad6b7169203331")) != server.span_id
    assert server.parent_span_id == client.span_id


async def test_unavailable_backend_is_retried_until_it_answers(receiver: Receiver) -> None:
    the_env = env()
    receiver.failures.append(Failure(times=3, grpc_code=grpc.StatusCode.UNAVAILABLE))
    handler = await _handler({"endpoint": receiver.grpc_endpoint}, the_env)
    handler.handle_tracespan([span(), span(span_id="2222222222222222")])
    await handler.queue.flush()
    assert receiver.attempts == 4
    assert len(receiver.spans()) == 2
    assert handler.queue.sent == handler.queue.offered == 2
    await handler.close()


@pytest.mark.parametrize(("failure", "reason", "lost"), [
    (Failure(times=1, grpc_code=grpc.StatusCode.INVALID_ARGUMENT), "permanent_error", 3),
    (Failure(times=1, reject=2), "permanent_error", 2),
])
async def test_refusals_are_not_retried_and_are_counted(receiver: Receiver, failure: Failure, reason: str,
                                                       lost: int) -> None:
    the_env = env()
    receiver.failures.append(failure)
    handler = await _handler({"endpoint": receiver.grpc_endpoint}, the_env)
    handler.handle_tracespan([span(span_id=f"{i + 1:016x}") for i in range(3)])
    await handler.queue.flush()
    await handler.close()
    assert receiver.attempts == 1
    assert dropped(the_env, reason) == lost
    assert handler.queue.sent == 3 - lost
    assert handler.queue.sent + sum(handler.queue.dropped.values()) == handler.queue.offered


async def test_http_retry_after_and_client_errors(receiver: Receiver) -> None:
    the_env = env()
    receiver.failures += [Failure(times=1, http_status=429, headers={"Retry-After": "0.05"}),
                          Failure(times=1, http_status=400)]
    handler = await _handler({"protocol": "http", "endpoint": receiver.http_endpoint}, the_env)
    handler.handle_tracespan([span()])
    await handler.queue.flush()  # 429, then 400: retried once, then refused for good
    handler.handle_tracespan([span(span_id="3333333333333333")])
    await handler.queue.flush()
    await handler.close()
    assert receiver.attempts == 3
    assert dropped(the_env, "permanent_error") == 1
    assert [s.span_id.hex() for _, s in receiver.spans()] == ["3333333333333333"]


async def test_sampling_keeps_or_drops_whole_traces_by_trace_id(receiver: Receiver) -> None:
    the_env = env()
    handler = await _handler({"endpoint": receiver.grpc_endpoint, "samplingRatio": 0.25}, the_env)
    traces = [f"{i * 7919:016x}{(i * 0x9E3779B97F4A7C15) % 2**64:016x}" for i in range(1, 401)]
    handler.handle_tracespan([span(trace=t, span_id=f"{s + 1:016x}") for t in traces for s in range(3)])
    await handler.close()
    kept = {s.trace_id.hex() for _, s in receiver.spans()}
    expected = {t for t in traces if int(t[16:], 16) < 2**62}  # the low 64 bits under a quarter of their range
    assert kept == expected and 60 < len(kept) < 140
    assert len(receiver.spans()) == 3 * len(kept)  # every span of a kept trace
    assert dropped(the_env, "sampled_out") == 3 * (len(traces) - len(kept))


async def test_malformed_ids_are_dropped_and_counted(receiver: Receiver) -> None:
    the_env = env()
    handler = await _handler({"endpoint": receiver.grpc_endpoint}, the_env)
    handler.handle_tracespan([span(trace=""), span(span_id="xyz"), span(parent="abcd"), span()])
    await handler.close()
    assert dropped(the_env, "invalid_instance") == 3
    assert len(receiver.spans()) == 1


async def test_log_entries_arrive_as_log_records(receiver: Receiver) -> None:
    handler = await _handler({"protocol": "http", "endpoint": receiver.http_endpoint})
    handler.handle_logentry([Instance("accesslog.instance.istio-system", "logentry", {
        "severity": "Warning", "timestamp": START,
        "variables": {"responseCode": 503, "latency": dt.timedelta(milliseconds=5), "sourceApp": "a", "mtls": False},
        "monitored_resource_dimensions": {"cluster": "demo"},
    })])
    await handler.close()
    ((resource, record),) = receiver.records()
    assert resource == {"cluster": "demo", "service.name": "mixer"}
    assert record.body.string_value == "accesslog"
    assert (record.severity_text, record.severity_number) == ("Warning", 13)
    assert record.time_unix_nano == 1_795_694_400_250_000_000
    assert record.observed_time_unix_nano == 1_700_000_000_000_000_000  # the Env's clock
    found = {kv.key: kv.value for kv in record.attributes}
    assert found["responseCode"].int_value == 503
    assert found["latency"].string_value == "5ms"
    assert found["mtls"].bool_value is False and found["mtls"].HasField("bool_value")


async def test_close_is_safe_twice_and_without_start() -> None:
    adapter = OtlpAdapter()
    handler = adapter.build(adapter.parse_params({}), env(), {})
    await handler.close()
    await handler.close()


async def test_a_full_queue_encodes_nothing_it_would_drop(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the backend is down the queue fills: spans past its room are counted queue_full, as an
    offer would count them, without being encoded first (encoding is most of a span's cost)."""
    import adapters.otlp.handler as otlp_handler

    encoded: list[str] = []
    encode = otlp_handler.tracespan_to_span

    def counting(fields: Any, ids: tuple[bytes, bytes, bytes]) -> Any:
        encoded.append(fields["span_id"])
        return encode(fields, ids)

    monkeypatch.setattr(otlp_handler, "tracespan_to_span", counting)
    the_env = env()
    handler = await _handler({"endpoint": receiver.grpc_endpoint,
                              "delivery": {**FAST, "queueSize": 4, "batchSize": 4, "batchTimeout": "1h"}}, the_env)
    handler.handle_tracespan([span(span_id=f"{i + 1:016x}") for i in range(3)])
    # room for one more: the first valid span is encoded; an invalid one stays invalid, the rest no_room
    handler.handle_tracespan([span(span_id="xyz"), span(span_id="0000000000000004"),
                              span(span_id="0000000000000005"), span(span_id="0000000000000006")])
    assert encoded == [f"{i:016x}" for i in range(1, 5)]
    assert dropped(the_env, "queue_full") == 2 and dropped(the_env, "invalid_instance") == 1
    # what the runtime asks before building: no room for spans (log records have their own queue)
    assert handler.report_room("tracespan") == 0 and handler.report_room("logentry") == 4
    handler.refuse_reports("tracespan", 3)  # the runtime matched three more it did not build
    assert dropped(the_env, "queue_full") == 5
    await handler.queue.flush()
    await handler.close()
    assert sorted(s.span_id.hex() for _, s in receiver.spans()) == [f"{i:016x}" for i in range(1, 5)]
    queue = handler.queue
    assert queue.offered == 9 and queue.sent == 4 and queue.dropped["queue_full"] == 5
