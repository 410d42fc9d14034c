"""The otlp adapter's params: where to send, how, and which traces to keep. Defaults live here."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mixer.push import DeliverySettings, parse_delivery
from mixer.sdk import ParamsError, unknown_fields

PROTOCOLS = ("grpc", "http")
COMPRESSIONS = ("none", "gzip")
DEFAULT_ENDPOINTS = {"grpc": "127.0.0.1:4317", "http": "http://127.0.0.1:4318"}
_KEYS = ("protocol", "endpoint", "headers", "compression", "samplingRatio", "delivery")


@dataclass(frozen=True)
class OtlpParams:
    protocol: str = "grpc"
    endpoint: str = DEFAULT_ENDPOINTS["grpc"]  # grpc: host:port; http: the base URL (/v1/traces is added)
    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every export (gRPC metadata)
    compression: str = "none"
    sampling_ratio: float = 1.0  # of traces kept, decided on the trace id: a trace is kept or dropped whole
    delivery: DeliverySettings = field(default_factory=DeliverySettings)


def parse(raw: Mapping[str, Any]) -> OtlpParams:
    """Params from a handler's ``params``; every problem with its path in one ParamsError."""
    problems = unknown_fields(raw, _KEYS)
    protocol = raw.get("protocol", "grpc")
    if protocol not in PROTOCOLS:
        problems.append(("protocol", f"must be one of {', '.join(PROTOCOLS)}, got {protocol!r}"))
        protocol = "grpc"
    endpoint = raw.get("endpoint", DEFAULT_ENDPOINTS[protocol])
    if not isinstance(endpoint, str):
        problems.append(("endpoint", f"must be a string, got {endpoint!r}"))
        endpoint = DEFAULT_ENDPOINTS[protocol]
    elif (problem := _endpoint_problem(protocol, endpoint)) is not None:
        problems.append(("endpoint", problem))
    headers = raw.get("headers", {})
    if not isinstance(headers, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        problems.append(("headers", "must be a mapping of strings to strings"))
        headers = {}
    elif protocol == "grpc" and any(k != k.lower() for k in headers):
        problems.append(("headers", "gRPC metadata keys must be lowercase"))
    compression = raw.get("compression", "none")
    if compression not in COMPRESSIONS:
        problems.append(("compression", f"must be one of {', '.join(COMPRESSIONS)}, got {compression!r}"))
        compression = "none"
    ratio = raw.get("samplingRatio", 1.0)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
        problems.append(("samplingRatio", f"must be a number between 0 and 1, got {ratio!r}"))
        ratio = 1.0
    delivery, delivery_problems = parse_delivery(raw.get("delivery"))
    problems += delivery_problems
    if problems:
        raise ParamsError(problems)
    return OtlpParams(protocol, endpoint.rstrip("/"), dict(headers), compression, float(ratio), delivery)


def _endpoint_problem(protocol: str, endpoint: str) -> str | None:
    if protocol == "http":
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return f"must be an http:// or https:// URL for protocol http, got {endpoint!r}"
        return None
    host, sep, port = endpoint.rpartition(":")
    if "://" in endpoint or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return f"must be host:port for protocol grpc, got {endpoint!r}"
    return None
