"""The OpenTelemetry Collector (built with the collector's builder) on loopback: a log record and a
span sent with the OpenTelemetry SDK over OTLP arrive and are read back from its file exporter."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from mixer.thirdparty import CollectorServer, ensure
from tests.proxy.support import wait_until


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorServer]:
    binary = ensure("otelcol")  # built once into the cache when missing (minutes when cold)
    with CollectorServer(binary, tmp_path_factory.mktemp("otelcol")) as server:
        yield server


def test_a_log_record_sent_over_otlp_grpc_arrives(collector: CollectorServer) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "mixer-test"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=collector.otlp_grpc_endpoint,
                                                                               insecure=True)))
    logger = logging.getLogger("mixer.tests.otlp")
    logger.propagate = False
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    try:
        logger.warning("access to %s", "/reviews/1", extra={"response_code": 503, "workload": "reviews-v2"})
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
    (record,) = wait_until(lambda: collector.log_records(), what="the log record in the collector's file")
    assert record["body"] == "access to /reviews/1"
    assert record["severity_text"] in ("WARN", "WARNING") and record["severity_number"] == 13
    assert record["attributes"]["response_code"] == 503
    assert record["attributes"]["workload"] == "reviews-v2"
    assert record["resource"]["service.name"] == "mixer-test"
    assert record["time_unix_nano"] > 0


def test_a_span_sent_over_otlp_http_arrives(collector: CollectorServer) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "mixer-test"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.otlp_http_endpoint}/v1/traces")))
    with provider.get_tracer("mixer.tests").start_as_current_span("check", attributes={"quota": 3}) as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    (got,) = wait_until(lambda: collector.spans(), what="the span in the collector's file")
    assert (got["name"], got["trace_id"], got["attributes"]) == ("check", trace_id, {"quota": 3})
    assert got["end_time_unix_nano"] >= got["start_time_unix_nano"] > 0
