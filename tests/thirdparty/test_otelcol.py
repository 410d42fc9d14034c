"""The OpenTelemetry Collector (built with the collector's builder) on loopback: a log record and a
span sent with the OpenTelemetry SDK over OTLP arrive and are read back from its file exporter."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from prometheus_client.parser import text_string_to_metric_families

from mixer.processes import free_port, http_get
from mixer.thirdparty import CollectorServer, ensure
from tests.proxy.support import wait_until


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorServer]:
    binary = ensure("otelcol")  # built once into the cache when missing (minutes when cold)
    with CollectorServer(binary, tmp_path_factory.mktemp("otelcol")) as server:
        yield server


def test_a_log_record_sent_over_otlp_grpc_arrives(collector: CollectorServer) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "mixer-test"}))
    exporter = OTLPLogExporter(endpoint=collector.otlp_grpc_endpoint, insecure=True)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    stamp = time.time_ns()
    provider.get_logger("mixer.tests").emit(
        timestamp=stamp, severity_number=SeverityNumber.WARN, severity_text="Warning",
        body={"url": "/reviews/1", "responseCode": 503},
        attributes={"instance": "accesslog.instance.istio-system", "destinationWorkload": "reviews-v2"})
    provider.shutdown()
    (record,) = wait_until(lambda: collector.log_records(), what="the log record in the collector's file")
    assert record["body"] == {"url": "/reviews/1", "responseCode": 503}
    assert (record["severity_text"], record["severity_number"]) == ("Warning", 13)
    assert record["attributes"] == {"instance": "accesslog.instance.istio-system", "destinationWorkload": "reviews-v2"}
    assert record["resource"]["service.name"] == "mixer-test"
    assert record["time_unix_nano"] == stamp
    assert record["scope"] == "mixer.tests"


def test_a_span_sent_over_otlp_http_arrives(collector: CollectorServer) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "mixer-test"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.otlp_http_endpoint}/v1/traces")))
    with provider.get_tracer("mixer.tests").start_as_current_span("check", attributes={"quota": 3}) as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    (got,) = wait_until(lambda: collector.spans(), what="the span in the collector's file")
    assert (got["name"], got["trace_id"], got["attributes"]) == ("check", trace_id, {"quota": 3})
    assert got["end_time_unix_nano"] >= got["start_time_unix_nano"] > 0


def test_count_connector_and_prometheus_exporter_turn_logs_into_a_scraped_count(tmp_path: Path) -> None:
    """The components a benchmark peer needs: logs -> count connector -> metrics -> /metrics."""
    port = free_port()
    extra = {
        "connectors": {"count": {}},
        "exporters": {"prometheus": {"endpoint": f"127.0.0.1:{port}"}},
        "service": {"pipelines": {"logs/count": {"receivers": ["otlp"], "exporters": ["count"]},
                                  "metrics/count": {"receivers": ["count"], "exporters": ["prometheus"]}}},
    }
    with CollectorServer(ensure("otelcol"), tmp_path, extra=extra) as collector:
        provider = LoggerProvider(resource=Resource.create({"service.name": "mixer-test"}))
        exporter = OTLPLogExporter(endpoint=collector.otlp_grpc_endpoint, insecure=True)
        # one export of three records: the connector counts per batch (a delta sum)
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        for n in range(3):
            provider.get_logger("mixer.tests").emit(body=f"entry {n}", severity_number=SeverityNumber.INFO)
        provider.shutdown()

        def count() -> float | None:
            answer = http_get(f"http://127.0.0.1:{port}/metrics")
            if answer is None:
                return None
            for family in text_string_to_metric_families(answer[1].decode()):
                for sample in family.samples:
                    if sample.name.startswith("log_record_count"):
                        return sample.value
            return None

        assert wait_until(lambda: count() == 3, what="log_record_count 3 on the prometheus exporter")
        # the file pipeline beside it still got every record
        wait_until(lambda: len(collector.log_records()) == 3, what="3 records in the collector's file")


def test_deltatocumulative_makes_the_scraped_count_a_running_total(tmp_path: Path) -> None:
    """The benchmark peer's pipeline: the signaltometrics connector's deltas, added up before the
    prometheus exporter, so a scrape after two exports shows both (the exporter alone keeps only the latest)."""
    port = free_port()
    extra = {
        "connectors": {"signaltometrics": {"logs": [{"name": "records", "description": "records",
                                                     "sum": {"value": "1"}}]}},
        "processors": {"deltatocumulative": {}},
        "exporters": {"prometheus": {"endpoint": f"127.0.0.1:{port}"}},
        "service": {"pipelines": {"logs/count": {"receivers": ["otlp"], "exporters": ["signaltometrics"]},
                                  "metrics/count": {"receivers": ["signaltometrics"], "processors": ["deltatocumulative"],
                                                    "exporters": ["prometheus"]}}},
    }
    with CollectorServer(ensure("otelcol"), tmp_path, extra=extra) as collector:

        def export(records: int) -> None:
            provider = LoggerProvider(resource=Resource.create({"service.name": "mixer-test"}))
            exporter = OTLPLogExporter(endpoint=collector.otlp_grpc_endpoint, insecure=True)
            provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
            for n in range(records):
                provider.get_logger("mixer.tests").emit(body=f"entry {n}", severity_number=SeverityNumber.INFO)
            provider.shutdown()

        def count() -> float | None:
            answer = http_get(f"http://127.0.0.1:{port}/metrics")
            if answer is None:
                return None
            for family in text_string_to_metric_families(answer[1].decode()):
                for sample in family.samples:
                    if sample.name == "records":
                        return sample.value
            return None

        export(3)
        assert wait_until(lambda: count() == 3, what="records 3 after the first export")
        export(2)
        assert wait_until(lambda: count() == 5, what="records 5 after the second export")
