"""The stackdriver adapter: Mixer's metric handler for Google Cloud Monitoring (CreateTimeSeries).

Params (Mixer's, snake_case or camelCase)::

    projectId: my-project            # required: metrics go to projects/<projectId>
    pushInterval: 1m                 # one point per series per interval (at least 10s; default 1m)
    appCredentials: true             # Application Default Credentials (also what happens with neither)
    serviceAccountPath: /etc/key.json  # or a service account key file
    endpoint: "host:port"            # default: the library's (monitoring.googleapis.com:443)
    insecure: false                  # true: plaintext, no credentials (a loopback fake, a private proxy)
    location: us-central1-a          # fill empty or missing "location" resource labels
    clusterName: mesh-1              # fill empty or missing "cluster_name" resource labels
    maxSeriesPerMetric: 10000        # past it, instances of new label sets are dropped (counted)
    seriesExpiry: 10m                # a series silent this long is forgotten (comes back with a new start)
    metricInfo:
      requestcount.instance.istio-system:       # the fully qualified metric instance
        kind: CUMULATIVE             # GAUGE | DELTA | CUMULATIVE (or Mixer's numbers 1 | 2 | 3)
        value: INT64                 # INT64 | DOUBLE | DISTRIBUTION (or 2 | 3 | 5)
        metricType: istio.io/service/server/request_count   # default custom.googleapis.com/<instance>
        unit: "1"                    # UCUM, for the descriptor
        description: ""
        labelNames: [response_code, ...]  # default: every dimension of the instance
        buckets:                     # DISTRIBUTION only (required there); exactly one of:
          linearBuckets: {numFiniteBuckets: 10, width: 1, offset: 0}
          exponentialBuckets: {numFiniteBuckets: 20, growthFactor: 2, scale: 1}
          explicitBuckets: {bounds: [0.5, 1, 5]}
    delivery: {...}                  # the shared push block (mixer/push.py); here batchSize <= 200,
                                     # and by default 200, batchTimeout 0s, senders 1

The monitored resource is the instance's ``monitored_resource_type`` with its
``monitored_resource_dimensions`` as labels (``k8s_container``, ``k8s_pod``, ...); without a type
(or ``UNSPECIFIED``) it is ``global`` with the project's id, as Mixer did. Duration values are
written in milliseconds (Istio's latency unit in Cloud Monitoring). Metric descriptors are found or
created before the first point of their type; points are aggregated per series between pushes.
``ISTIO_CONFIG`` (istio.yaml beside this file) holds Istio 1.4's stackdriver metric config; ``adapters.stackdriver.fake``
a loopback MetricService for tests and the demo.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from adapters.stackdriver.config import Kind, MetricInfo, Params, ValueType, parse
from adapters.stackdriver.handler import StackdriverHandler
from mixer.params import Buckets
from mixer.sdk import Adapter, Env, Handler, InstanceSchema

__all__ = ["ISTIO_CONFIG", "Buckets", "Kind", "MetricInfo", "Params", "StackdriverAdapter", "StackdriverHandler", "ValueType"]

ISTIO_CONFIG = Path(__file__).resolve().parent / "istio.yaml"


class StackdriverAdapter(Adapter):
    name: ClassVar[str] = "stackdriver"
    templates: ClassVar[frozenset[str]] = frozenset({"metric"})

    def parse_params(self, raw: Mapping[str, Any]) -> Params:
        return parse(raw)

    def build(self, params: Params, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        return StackdriverHandler(params, env, instances)
