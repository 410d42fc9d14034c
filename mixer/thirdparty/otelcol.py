"""An OpenTelemetry Collector on free loopback ports that receives OTLP (gRPC and HTTP) and writes
what arrives, one file per signal, as OTLP JSON lines, so a test can read back exactly what a real
OTLP receiver accepted. ``pipelines`` adds other components (a prometheus exporter, a connector)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from mixer.processes import free_port
from mixer.thirdparty._child import ConfiguredChild

SIGNALS = ("logs", "traces", "metrics")


class CollectorServer(ConfiguredChild):
    """``otelcol-mixer --config FILE``: OTLP in; ``logs.jsonl``/``traces.jsonl``/``metrics.jsonl`` out."""

    name = "otelcol"

    def __init__(self, binary: Path | str, workdir: Path | None = None,
                 extra: Mapping[str, Any] | None = None, self_metrics: bool = False) -> None:
        """``extra`` is merged into the config (sections ``receivers``, ``exporters``, ``connectors``,
        ``processors`` and ``service.pipelines``), e.g. a prometheus exporter for a benchmark.
        ``self_metrics``: the collector's own metrics (``otelcol_receiver_accepted_spans_total``, ...)
        on a free loopback port, ``self_metrics_url``, instead of none."""
        ports = {"otlp_grpc": free_port(), "otlp_http": free_port()}
        if self_metrics:
            ports["self_metrics"] = free_port()
        super().__init__(binary, ports, workdir)
        self.extra = extra or {}

    @property
    def self_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['self_metrics']}/metrics"

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['otlp_grpc']}"

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['otlp_http']}"

    def output(self, signal: str) -> Path:
        return self.workdir / f"{signal}.jsonl"

    def config_text(self) -> str:
        def at(port: str) -> dict[str, str]:
            return {"endpoint": f"127.0.0.1:{self.ports[port]}"}

        config: dict[str, Any] = {
            "receivers": {"otlp": {"protocols": {"grpc": at("otlp_grpc"), "http": at("otlp_http")}}},
            "exporters": {f"file/{signal}": {"path": str(self.output(signal)), "flush_interval": "100ms"}
                          for signal in SIGNALS},
            "service": {
                "pipelines": {signal: {"receivers": ["otlp"], "exporters": [f"file/{signal}"]} for signal in SIGNALS},
                # no self-metrics listener unless asked for: its default is a fixed port (8888)
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
            },
        }
        if "self_metrics" in self.ports:
            config["service"]["telemetry"]["metrics"] = {"level": "basic", "readers": [{"pull": {"exporter": {
                "prometheus": {"host": "127.0.0.1", "port": self.ports["self_metrics"]}}}}]}
        for section in ("receivers", "exporters", "connectors", "processors"):
            if section in self.extra:
                config.setdefault(section, {}).update(self.extra[section])
        config["service"]["pipelines"].update(self.extra.get("service", {}).get("pipelines", {}))
        return str(yaml.safe_dump(config, sort_keys=False))

    def batches(self, signal: str) -> list[dict[str, Any]]:
        """Every OTLP JSON export request the file exporter wrote for ``signal`` so far."""
        try:
            text = self.output(signal).read_text()
        except FileNotFoundError:
            return []
        # The exporter may be mid-line: only complete lines count.
        return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]

    def log_records(self) -> list[dict[str, Any]]:
        """Every log record received, flattened: body, severity, attributes, resource, scope, times."""
        return list(_log_records(self.batches("logs")))

    def spans(self) -> list[dict[str, Any]]:
        """Every span received, flattened: name, ids (hex), kind, times, attributes, status, resource."""
        return list(_spans(self.batches("traces")))


def _log_records(batches: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        for resource_logs in batch.get("resourceLogs", []):
            resource = attributes(resource_logs.get("resource", {}).get("attributes", []))
            for scope_logs in resource_logs.get("scopeLogs", []):
                scope = scope_logs.get("scope", {}).get("name", "")
                for record in scope_logs.get("logRecords", []):
                    yield {
                        "body": any_value(record.get("body", {})),
                        "severity_text": record.get("severityText", ""),
                        "severity_number": record.get("severityNumber", 0),
                        "attributes": attributes(record.get("attributes", [])),
                        "time_unix_nano": int(record.get("timeUnixNano", 0)),
                        "observed_time_unix_nano": int(record.get("observedTimeUnixNano", 0)),
                        "trace_id": record.get("traceId", ""),
                        "span_id": record.get("spanId", ""),
                        "resource": resource,
                        "scope": scope,
                    }


def _spans(batches: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        for resource_spans in batch.get("resourceSpans", []):
            resource = attributes(resource_spans.get("resource", {}).get("attributes", []))
            for scope_spans in resource_spans.get("scopeSpans", []):
                scope = scope_spans.get("scope", {}).get("name", "")
                for span in scope_spans.get("spans", []):
                    yield {
                        "name": span.get("name", ""),
                        "trace_id": span.get("traceId", ""),
                        "span_id": span.get("spanId", ""),
                        "parent_span_id": span.get("parentSpanId", ""),
                        "kind": span.get("kind", 0),
                        "start_time_unix_nano": int(span.get("startTimeUnixNano", 0)),
                        "end_time_unix_nano": int(span.get("endTimeUnixNano", 0)),
                        "attributes": attributes(span.get("attributes", [])),
                        "status": span.get("status", {}),
                        "resource": resource,
                        "scope": scope,
                    }


def attributes(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """OTLP JSON ``[{"key": k, "value": AnyValue}]`` as a dict of plain values."""
    return {pair["key"]: any_value(pair.get("value", {})) for pair in pairs}


def any_value(value: Mapping[str, Any]) -> Any:
    """One OTLP JSON AnyValue as a plain value (int64 arrives as a decimal string in proto3 JSON)."""
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    if "arrayValue" in value:
        return [any_value(item) for item in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return attributes(value["kvlistValue"].get("values", []))
    return None
