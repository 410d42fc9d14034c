"""The otlp adapter: tracespan and logentry instances to any OTLP endpoint (Jaeger, Tempo, an
OpenTelemetry Collector), over gRPC or HTTP/protobuf, through the push helper's queues.

Params::

    protocol: grpc                      # grpc | http (OTLP/HTTP with protobuf bodies)
    endpoint: 127.0.0.1:4317            # grpc: host:port; http: base URL, e.g. http://127.0.0.1:4318
                                        # (/v1/traces and /v1/logs are added)
    headers: {x-tenant: demo}           # sent with every export (gRPC metadata: lowercase keys)
    compression: none                   # none | gzip
    samplingRatio: 1.0                  # share of traces kept, decided on the trace id (as
                                        # OpenTelemetry's TraceIdRatioBased): whole traces, the
                                        # same on every replica; the rest count as sampled_out
    delivery: {...}                     # the push helper's queue, batching and retry (README)

How a tracespan becomes an OTLP span (resource ``service.name``, kind, status, attribute names):
``adapters/otlp/convert.py``. Dropped instances are counted in ``mixer_dropped_instances_total``
by reason: the push helper's, plus ``sampled_out`` and ``invalid_instance`` (a malformed id).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from adapters.otlp.config import OtlpParams, parse
from adapters.otlp.handler import OtlpHandler
from mixer.sdk import Adapter, Env, Handler, InstanceSchema

__all__ = ["OtlpAdapter", "OtlpHandler", "OtlpParams"]


class OtlpAdapter(Adapter):
    name: ClassVar[str] = "otlp"
    templates: ClassVar[frozenset[str]] = frozenset({"tracespan", "logentry"})

    def parse_params(self, raw: Mapping[str, Any]) -> OtlpParams:
        return parse(raw)

    def build(self, params: OtlpParams, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        return OtlpHandler(params, env)
