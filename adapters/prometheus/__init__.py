"""The prometheus adapter: Mixer's metric handler, served at /metrics for Prometheus to scrape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from adapters.prometheus.collector import StoreCollector
from adapters.prometheus.config import DEFAULT_MAX_SERIES, OVERFLOW_LABEL, Kind, MetricInfo, Params, parse
from adapters.prometheus.handler import PrometheusHandler
from mixer.sdk import Adapter, Env, Handler, InstanceSchema

__all__ = [
    "DEFAULT_MAX_SERIES",
    "OVERFLOW_LABEL",
    "Kind",
    "MetricInfo",
    "Params",
    "PrometheusAdapter",
    "PrometheusHandler",
    "StoreCollector",
]


class PrometheusAdapter(Adapter):
    name: ClassVar[str] = "prometheus"
    templates: ClassVar[frozenset[str]] = frozenset({"metric"})

    def parse_params(self, raw: Mapping[str, Any]) -> Params:
        return parse(raw)

    def build(self, params: Params, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        return PrometheusHandler(params, env, instances)
