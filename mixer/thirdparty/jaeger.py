"""Jaeger v2 all-in-one on free loopback ports with in-memory storage, and its query HTTP API.

OTLP comes in over gRPC and HTTP; ``/api/services`` and ``/api/traces`` answer what arrived.
A binary built from the Go module serves a placeholder page where the UI would be (the UI's
assets are an npm build of another repository); the query API is complete.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from mixer.processes import free_port
from mixer.thirdparty._child import ConfiguredChild


class JaegerServer(ConfiguredChild):
    """``jaeger --config FILE``: OTLP receivers, memory storage, the query service; stopped by PID."""

    name = "jaeger"

    def __init__(self, binary: Path | str, workdir: Path | None = None, max_traces: int = 100_000,
                 query_port: int | None = None) -> None:
        ports = {"otlp_grpc": free_port(), "otlp_http": free_port(), "query_http": query_port or free_port(),
                 "query_grpc": free_port()}
        super().__init__(binary, ports, workdir)
        self.max_traces = max_traces

    @property
    def url(self) -> str:
        """The query service (API and UI)."""
        return f"http://127.0.0.1:{self.ports['query_http']}"

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['otlp_grpc']}"

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['otlp_http']}"

    def config_text(self) -> str:
        def at(port: str) -> dict[str, str]:
            return {"endpoint": f"127.0.0.1:{self.ports[port]}"}

        config = {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query"],
                "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                         "exporters": ["jaeger_storage_exporter"]}},
                # no self-metrics listener: it would take a fixed port (8888)
                "telemetry": {"resource": {"service.name": "jaeger"}, "metrics": {"level": "none"},
                              "logs": {"level": "info"}},
            },
            "extensions": {
                "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": self.max_traces}}}},
                "jaeger_query": {"storage": {"traces": "memstore"}, "http": at("query_http"), "grpc": at("query_grpc")},
            },
            "receivers": {"otlp": {"protocols": {"grpc": at("otlp_grpc"), "http": at("otlp_http")}}},
            "processors": {"batch": {"timeout": "100ms"}},
            "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
        }
        return str(yaml.safe_dump(config, sort_keys=False))

    def services(self) -> list[str]:
        """Service names with stored spans."""
        return [str(name) for name in self._api("services", {}) or []]

    def traces(self, service: str, **params: str | int) -> list[dict[str, Any]]:
        """Jaeger's JSON traces for ``service`` (``operation``, ``limit``, ``lookback``, ``tags``...)."""
        query = {"service": service, **{key: str(value) for key, value in params.items()}}
        return list(self._api("traces", query) or [])

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One trace by its hex id, or None when Jaeger has not stored it."""
        try:
            found = self._api(f"traces/{trace_id}", {})
        except LookupError:
            return None
        return found[0] if found else None

    def _api(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}/api/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                body = json.loads(reply.read())
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            if err.code == 404:
                raise LookupError(f"jaeger {path}: {text}") from None
            raise ValueError(f"jaeger {path} {params}: HTTP {err.code}: {text}") from None
        if body.get("errors"):
            raise ValueError(f"jaeger {path} {params}: {body['errors']}")
        return body.get("data")
