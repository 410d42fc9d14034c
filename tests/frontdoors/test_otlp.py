"""The OTLP traces front door in process: real gRPC and HTTP listeners on free loopback ports, fed
by OpenTelemetry's own exporters and by hand-made export requests, running the default config's
tracespan instance and rule (its handler replaced by a recording one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from adapters.memory import MemoryAdapter, MemoryHandler, MemoryParams
from mixer.frontdoors import FrontDoorOptions, GrpcListener, HttpListener, standard_doors
from mixer.processes import free_port
from mixer.registry import AdapterRegistry
from mixer.runtime import Runtime
from mixer.sdk import Instance

TRACING = Path(__file__).parents[2] / "mixer" / "defaultconfig" / "istio-tracing.yaml"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class RecordingOtlp(MemoryAdapter):
    """Stands in for the otlp adapter behind the default config's ``otlp`` handler."""

    def parse_params(self, raw: Mapping[str, Any]) -> MemoryParams:
        return MemoryParams()


class Mixer:
    def __init__(self, runtime: Runtime, grpc_port: int, http_port: int) -> None:
        self.runtime = runtime
        self.grpc_port = grpc_port
        self.http_port = http_port

    def spans(self) -> list[Instance]:
        handler = self.runtime.snapshot.slots["otlp.handler.istio-system"].handler
        assert isinstance(handler, MemoryHandler)
        return list(handler.of("tracespan"))

    def rejected(self) -> float:
        value = self.runtime.metrics.registry.get_sample_value("mixer_rejected_bags_total", {"front_door": "otlp"})
        return value or 0.0


async def _serve(trust_peer_headers: bool) -> AsyncIterator[Mixer]:
    runtime = await Runtime.load([TRACING], registry=AdapterRegistry({"otlp": RecordingOtlp()}))
    options = FrontDoorOptions(port=free_port(), trust_peer_headers=trust_peer_headers)
    doors = standard_doors(runtime, options)
    grpc_listener = GrpcListener(runtime, doors, options)
    http_listener = HttpListener(runtime, doors, "127.0.0.1", free_port())
    await grpc_listener.start()
    await http_listener.start()
    try:
        yield Mixer(runtime, grpc_listener.port, http_listener.port)
    finally:
        await http_listener.stop()
        await grpc_listener.stop()
        await runtime.close()


@pytest.fixture
async def mixer() -> AsyncIterator[Mixer]:
    async for served in _serve(trust_peer_headers=True):
        yield served


@pytest.fixture
async def untrusting_mixer() -> AsyncIterator[Mixer]:
    async for served in _serve(trust_peer_headers=False):
        yield served


def _trace_with_sdk(exporter: SpanExporter) -> tuple[int, int, int]:
    """A server span and its client child, exported by the OpenTelemetry SDK (blocking: run in a thread)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "reviews"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /reviews", kind=SpanKind.SERVER) as server:
        server.set_attribute("http.response.status_code", 200)
        server.set_attribute("destination.workload.name", "reviews-v1")
        with tracer.start_as_current_span("GET /ratings", kind=SpanKind.CLIENT) as client:
            client.set_attribute("http.response.status_code", 503)
            client.set_attribute("http.request.method", "GET")
            client.set_attribute("url.full", "http://ratings:9080/ratings/7?x=1")
            client.set_attribute("x-mixer-workload", "ratings-v1")
            client.set_status(Status(StatusCode.ERROR, "upstream failed"))
    provider.shutdown()
    return server.get_span_context().trace_id, server.get_span_context().span_id, client.get_span_context().span_id


def _check_sdk_trace(spans: list[Instance], ids: tuple[int, int, int]) -> None:
    trace_id, server_id, client_id = ids
    by_kind = {span.fields["span_tags"]["span.kind"]: span.fields for span in spans}
    assert set(by_kind) == {"server", "client"}
    server, client = by_kind["server"], by_kind["client"]
    assert server["trace_id"] == client["trace_id"] == f"{trace_id:032x}"
    assert server["span_id"] == f"{server_id:016x}" and server["parent_span_id"] == ""
    assert client["span_id"] == f"{client_id:016x}" and client["parent_span_id"] == f"{server_id:016x}"
    assert client["client_span"] is True and server["client_span"] is False
    assert (server["http_status_code"], client["http_status_code"]) == (200, 503)
    assert server["span_name"] == "GET /reviews"
    assert client["end_time"] >= client["start_time"] >= server["start_time"]
    assert server["span_tags"]["service.name"] == client["span_tags"]["service.name"] == "reviews"
    assert server["span_tags"]["destination.workload.name"] == "reviews-v1"  # typed in by attribute name
    assert server["destination_name"] == "reviews-v1"
    assert client["span_tags"]["otel.status_code"] == "ERROR"
    assert client["span_tags"]["otel.status_description"] == "upstream failed"
    assert client["span_tags"]["http.request.method"] == "GET"
    assert client["span_tags"]["url.path"] == "/ratings/7"
    assert client["span_tags"]["tracer"]["url.full"] == "http://ratings:9080/ratings/7?x=1"
    assert client["destination_name"] == "ratings-v1"  # the callee's header, trusted by option


async def test_the_sdks_grpc_exporter_feeds_the_rules(mixer: Mixer) -> None:
    exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{mixer.grpc_port}", insecure=True)
    ids = await asyncio.to_thread(_trace_with_sdk, exporter)
    _check_sdk_trace(mixer.spans(), ids)
    assert mixer.runtime.metrics.registry.get_sample_value("mixer_reports_total", {"front_door": "otlp"}) == 2


async def test_the_sdks_http_exporter_feeds_the_rules(mixer: Mixer) -> None:
    exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{mixer.http_port}/v1/traces")
    ids = await asyncio.to_thread(_trace_with_sdk, exporter)
    _check_sdk_trace(mixer.spans(), ids)


async def test_peer_headers_name_the_other_side_only_when_trusted(untrusting_mixer: Mixer) -> None:
    exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{untrusting_mixer.grpc_port}", insecure=True)
    await asyncio.to_thread(_trace_with_sdk, exporter)
    client = next(s.fields for s in untrusting_mixer.spans() if s.fields["client_span"])
    assert client["destination_name"] == "unknown"
    assert client["span_tags"]["tracer"]["x-mixer-workload"] == "ratings-v1"  # kept as the tracer wrote it


def _span(trace_id: bytes = b"\x01" * 16, span_id: bytes = b"\x02" * 8, **fields: Any) -> trace_pb2.Span:
    span = trace_pb2.Span(trace_id=trace_id, span_id=span_id, name="op", kind=trace_pb2.Span.SPAN_KIND_SERVER,
                          start_time_unix_nano=1_700_000_000_000_000_000, end_time_unix_nano=1_700_000_000_500_000_000)
    for key, value in fields.items():
        setattr(span, key, value)
    return span


def _request(*spans: trace_pb2.Span) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name", value=common_pb2.AnyValue(string_value="b"))
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def _mixed_request() -> trace_service_pb2.ExportTraceServiceRequest:
    wrongly_typed = _span(span_id=b"\x05" * 8)
    wrongly_typed.attributes.add(key="response.code", value=common_pb2.AnyValue(string_value="two hundred"))
    return _request(
        _span(),
        _span(trace_id=b"\x01" * 4),  # too short
        _span(span_id=b"\x00" * 8),  # all zero
        _span(span_id=b"\x03" * 8, end_time_unix_nano=1),  # ends before it starts
        wrongly_typed,
        _span(span_id=b"\x04" * 8, parent_span_id=b"\x02" * 8),
    )


def _check_partial(response: trace_service_pb2.ExportTraceServiceResponse, mixer: Mixer) -> None:
    assert response.partial_success.rejected_spans == 4
    message = response.partial_success.error_message
    for index, attribute in ((1, "span.trace_id"), (2, "span.id"), (3, "span.end_time"), (4, "response.code")):
        assert f"span {index}: attribute '{attribute}'" in message, message
    spans = mixer.spans()
    assert [s.fields["span_id"] for s in spans] == ["02" * 8, "04" * 8]
    assert spans[1].fields["parent_span_id"] == "02" * 8
    assert mixer.rejected() == 4


async def test_bad_spans_are_rejected_alone_with_partial_success_over_grpc(mixer: Mixer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mixer.grpc_port}") as channel:
        raw = await channel.unary_unary(EXPORT)(_mixed_request().SerializeToString())
    _check_partial(trace_service_pb2.ExportTraceServiceResponse.FromString(raw), mixer)


async def test_bad_spans_are_rejected_alone_with_partial_success_over_http(mixer: Mixer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{mixer.http_port}/v1/traces", data=_mixed_request().SerializeToString(),
                                headers={"Content-Type": "application/x-protobuf"}) as reply:
            assert reply.status == 200
            assert reply.content_type == "application/x-protobuf"
            raw = await reply.read()
    _check_partial(trace_service_pb2.ExportTraceServiceResponse.FromString(raw), mixer)


async def test_resource_attributes_named_by_attribute_are_typed_in_and_a_bad_one_refuses_its_spans_only(
    mixer: Mixer,
) -> None:
    request = _request(_span())  # a resource without identity: its span goes through untouched
    identified = request.resource_spans.add()
    for key, value in (("service.name", "reviews"), ("destination.workload.name", "reviews-v1"),
                       ("destination.labels", '{"app": "reviews"}'), ("destination.service.host", "reviews.shop")):
        identified.resource.attributes.add(key=key, value=common_pb2.AnyValue(string_value=value))
    own = _span(span_id=b"\x06" * 8)  # a span's own attribute wins over its resource's
    own.attributes.add(key="destination.service.host", value=common_pb2.AnyValue(string_value="own.host"))
    identified.scope_spans.add().spans.extend([_span(span_id=b"\x05" * 8), own])
    broken = request.resource_spans.add()
    broken.resource.attributes.add(key="response.code", value=common_pb2.AnyValue(string_value="two hundred"))
    broken.scope_spans.add().spans.extend([_span(span_id=b"\x07" * 8), _span(span_id=b"\x08" * 8)])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mixer.grpc_port}") as channel:
        raw = await channel.unary_unary(EXPORT)(request.SerializeToString())
    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(raw).partial_success
    assert answer.rejected_spans == 2
    assert "span 3: attribute 'response.code'" in answer.error_message
    assert "span 4: attribute 'response.code'" in answer.error_message
    spans = {s.fields["span_id"]: s.fields for s in mixer.spans()}
    assert set(spans) == {"02" * 8, "05" * 8, "06" * 8}
    assert spans["02" * 8]["destination_name"] == "unknown"
    assert spans["05" * 8]["destination_name"] == "reviews-v1"
    assert spans["05" * 8]["span_tags"]["service.name"] == "reviews"
    assert spans["05" * 8]["span_tags"]["destination.service.host"] == "reviews.shop"
    assert spans["06" * 8]["span_tags"]["destination.service.host"] == "own.host"
    assert mixer.rejected() == 2


async def test_malformed_requests_are_refused_whole_and_the_door_keeps_serving(mixer: Mixer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mixer.grpc_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary(EXPORT)(b"\xff\xff\xff\xff")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    url = f"http://127.0.0.1:{mixer.http_port}/v1/traces"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=b"\xff\xff\xff\xff", headers={"Content-Type": "application/x-protobuf"}) as reply:
            assert reply.status == 400
            status = status_pb2.Status.FromString(await reply.read())
            assert "ExportTraceServiceRequest" in status.message
        async with session.post(url, data=b"{}", headers={"Content-Type": "application/json"}) as reply:
            assert reply.status == 415
        async with session.post(url, data=_request(_span()).SerializeToString(),
                                headers={"Content-Type": "application/x-protobuf"}) as reply:
            assert reply.status == 200
    assert mixer.rejected() == 2
    assert len(mixer.spans()) == 1


async def test_many_bad_spans_get_a_bounded_answer_and_are_all_counted(mixer: Mixer) -> None:
    request = _request(*(_span(trace_id=b"\x01" * 4) for _ in range(30)))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mixer.grpc_port}") as channel:
        raw = await channel.unary_unary(EXPORT)(request.SerializeToString())
    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(raw).partial_success
    assert answer.rejected_spans == 30
    assert answer.error_message.count("attribute 'span.trace_id'") == 20
    assert answer.error_message.endswith("; and 10 more")
    assert mixer.rejected() == 30 and not mixer.spans()
