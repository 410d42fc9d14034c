"""Jaeger v2 (built from the Go module) on loopback: spans sent with the OpenTelemetry SDK over OTLP
gRPC and OTLP HTTP are found through the query HTTP API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind

from mixer.thirdparty import JaegerServer, ensure
from tests.proxy.support import wait_until


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JaegerServer]:
    binary = ensure("jaeger")  # built once into the cache when missing (minutes when cold)
    with JaegerServer(binary, tmp_path_factory.mktemp("jaeger")) as server:
        yield server


def send_one_span(exporter: SpanExporter, service: str) -> str:
    """One server span with HTTP attributes; returns its trace id in hex."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("mixer.tests")
    with tracer.start_as_current_span("GET /reviews/{id}", kind=SpanKind.SERVER,
                                      attributes={"http.request.method": "GET", "http.response.status_code": 503}) as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span["tags"]}


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_a_span_sent_over_otlp_is_found_through_the_query_api(jaeger: JaegerServer, transport: str) -> None:
    service = f"mixer-test-{transport}"
    exporter: SpanExporter = (GrpcSpanExporter(endpoint=jaeger.otlp_grpc_endpoint, insecure=True) if transport == "grpc"
                              else HttpSpanExporter(endpoint=f"{jaeger.otlp_http_endpoint}/v1/traces"))
    trace_id = send_one_span(exporter, service)
    wait_until(lambda: service in jaeger.services(), what=f"{service} in /api/services")
    (trace,) = wait_until(lambda: jaeger.traces(service, limit=10), what=f"a trace of {service}")
    assert trace["traceID"] == trace_id
    (span,) = trace["spans"]
    assert span["operationName"] == "GET /reviews/{id}"
    assert tags(span)["http.response.status_code"] == 503
    assert tags(span)["span.kind"] == "server"
    assert trace["processes"][span["processID"]]["serviceName"] == service
    assert jaeger.trace(trace_id) is not None
    assert jaeger.trace("0" * 31 + "1") is None


def test_stop_ends_the_process_and_removes_its_own_folder(tmp_path: Path) -> None:
    server = JaegerServer(ensure("jaeger"))
    server.start()
    server.wait_ready()
    pid, workdir = server.pid, server.workdir
    assert pid is not None and Path(f"/proc/{pid}").exists()
    server.stop()
    server.stop()
    assert not Path(f"/proc/{pid}").exists() and not workdir.exists()
