"""The prometheus adapter: Mixer's metric handler, served at /metrics for Prometheus to scrape.

Params (Mixer's, snake_case or camelCase)::

    address: "127.0.0.1:42422"          # host:port of /metrics; port 0 picks a free one; default:
                                        # `mixer serve --metrics-address` (127.0.0.1:42422)
    max_series_per_metric: 10000        # past it, new label sets fold into one series whose
                                        # labels are all "__overflow__" (counted as drops)
    metricsExpirationPolicy:            # optional; without it series never expire
      metricsExpiryDuration: "10m"      # a series idle this long is removed
      expiryCheckIntervalDuration: "5m" # default: half the expiry
    metrics:
    - name: requests_total              # exposed as <namespace>_<name>; default: the instance name
      namespace: istio                  # default "istio"
      instance_name: requestcount.instance.istio-system
      kind: COUNTER                     # COUNTER | GAUGE | DISTRIBUTION
      label_names: [reporter, ...]      # instance dimensions, by name
      description: ""
      max_series: 10000                 # per-metric override
      buckets:                          # DISTRIBUTION only; exactly one of:
        explicit_buckets: {bounds: [0.005, 0.01, ...]}
        linear_buckets: {num_finite_buckets: 10, width: 1, offset: 0}
        exponential_buckets: {num_finite_buckets: 8, growth_factor: 10, scale: 1}

One scrape returns these metrics and the mixer's own (``mixer_*``, ``process_*``), in the Prometheus
text format, or OpenMetrics when the Accept header asks for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from adapters.prometheus.collector import StoreCollector
from adapters.prometheus.config import (
    DEFAULT_ADDRESS,
    DEFAULT_MAX_SERIES,
    OVERFLOW_LABEL,
    Kind,
    MetricInfo,
    Params,
    parse,
    split_address,
)
from adapters.prometheus.handler import PrometheusHandler
from mixer.sdk import Adapter, Env, Handler, InstanceSchema
from mixer.sharedmetrics import SharedMetrics

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_MAX_SERIES",
    "OVERFLOW_LABEL",
    "Kind",
    "MetricInfo",
    "Params",
    "PrometheusAdapter",
    "PrometheusHandler",
    "StoreCollector",
    "split_address",
]


class PrometheusAdapter(Adapter):
    name: ClassVar[str] = "prometheus"
    templates: ClassVar[frozenset[str]] = frozenset({"metric"})

    def __init__(self, default_address: str = DEFAULT_ADDRESS, shared_dir: str | None = None) -> None:
        self.default_address = default_address  # for handlers whose params name no address
        self.shared_dir = shared_dir  # ``mixer serve --workers N``: where the workers' snapshots meet

    def parse_params(self, raw: Mapping[str, Any]) -> Params:
        return parse(raw, self.default_address)

    def build(self, params: Params, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        shared = SharedMetrics(self.shared_dir, env.handler_name) if self.shared_dir else None
        return PrometheusHandler(params, env, instances, shared)
