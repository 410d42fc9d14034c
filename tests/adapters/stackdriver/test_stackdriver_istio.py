"""Istio 1.4's stackdriver config (adapters/stackdriver/istio.yaml) through the runtime into the fake:
bags in, the istio.io TimeSeries Cloud Monitoring would receive out."""

from __future__ import annotations

import datetime as dt
from typing import Any

import yaml

from adapters.stackdriver import ISTIO_CONFIG, StackdriverHandler
from adapters.stackdriver.fake import FakeMetricService
from mixer.config import compile_config
from mixer.registry import AdapterRegistry
from mixer.runtime import Runtime

from .conftest import FAST_DELIVERY, PROJECT



def istio_config(endpoint: str) -> str:
    docs = list(yaml.safe_load_all(ISTIO_CONFIG.read_text()))
    params = docs[0]["spec"]["params"]
    del params["appCredentials"]
    params.update(projectId=PROJECT, endpoint=endpoint, insecure=True, location="europe-west1-b",
                  clusterName="mesh-1", delivery=FAST_DELIVERY)
    return yaml.safe_dump_all(docs)


def bag(reporter: str, code: int, millis: int) -> dict[str, Any]:
    return {
        "context.protocol": "http", "context.reporter.kind": reporter,
        "source.workload.name": "frontend", "source.workload.namespace": "shop", "source.name": "frontend-7d4b9",
        "destination.workload.name": "catalog", "destination.workload.namespace": "shop",
        "destination.name": "catalog-5f6c8", "destination.container.name": "catalog",
        "destination.service.name": "catalog", "destination.service.namespace": "shop", "destination.port": 8080,
        "request.method": "GET", "request.path": "/items", "request.total_size": 300, "response.total_size": 1500,
        "response.code": code, "response.duration": dt.timedelta(milliseconds=millis), "connection.mtls": True,
    }


async def test_istio_stackdriver_metrics_from_bags(fake: FakeMetricService) -> None:
    runtime = Runtime()
    await runtime.apply(compile_config([("stackdriver.yaml", istio_config(fake.endpoint))], AdapterRegistry()))
    try:
        handler = runtime.snapshot.slots["stackdriver.handler.istio-system"].handler
        assert isinstance(handler, StackdriverHandler)
        runtime.report([bag("inbound", 200, 12), bag("inbound", 200, 3), bag("inbound", 503, 40), bag("outbound", 200, 15)])
        # server: response codes 200 and 503 x (count + 3 distributions); client: one of each
        assert handler.flush() == 2 * 4 + 4
        await handler.queue.flush()
        assert fake.points_written == 12 and handler.queue.sent == 12
        assert not fake.descriptor_creates  # istio.io types are Google's own: found, not created

        counts = {ts.metric.labels["response_code"]: ts for ts in fake.written
                  if ts.metric.type == "istio.io/service/server/request_count"}
        ok = counts["200"]
        assert ok.points[0].value.int64_value == 2 and counts["503"].points[0].value.int64_value == 1
        assert dict(ok.metric.labels) == {
            "destination_service_name": "catalog", "destination_service_namespace": "shop", "destination_port": "8080",
            "request_operation": "GET", "request_protocol": "http", "api_version": "unknown", "api_name": "unknown",
            "response_code": "200", "service_authentication_policy": "mutual_tls",
            "source_workload_namespace": "shop", "source_workload_name": "frontend", "source_owner": "unknown",
            "destination_workload_namespace": "shop", "destination_workload_name": "catalog",
            "destination_owner": "unknown", "destination_principal": "unknown", "source_principal": "unknown",
        }
        assert ok.resource.type == "k8s_container"
        assert dict(ok.resource.labels) == {
            "project_id": PROJECT, "location": "europe-west1-b", "cluster_name": "mesh-1",
            "namespace_name": "shop", "pod_name": "catalog-5f6c8", "container_name": "catalog",
        }
        latency = next(ts for ts in fake.written if ts.metric.type == "istio.io/service/server/response_latencies"
                       and ts.metric.labels["response_code"] == "200")
        dist = latency.points[0].value.distribution_value
        # exponential, 20 finite buckets, scale 1, growth 2: 12 ms in [8, 16) = bucket 4, 3 ms in [2, 4) = bucket 2
        assert dist.count == 2 and dist.mean == 7.5 and dist.bucket_counts[2] == 1 and dist.bucket_counts[4] == 1
        assert len(dist.bucket_counts) == 22 and dist.bucket_options.exponential_buckets.growth_factor == 2

        client = [ts for ts in fake.written if ts.metric.type.startswith("istio.io/service/client/")]
        assert sorted(ts.metric.type.rsplit("/", 1)[1] for ts in client) == [
            "request_bytes", "request_count", "response_bytes", "roundtrip_latencies"]
        assert {ts.resource.type for ts in client} == {"k8s_pod"}
        assert dict(client[0].resource.labels)["pod_name"] == "frontend-7d4b9"
    finally:
        await runtime.close()
