"""One demo mesh with a real Prometheus for every query test in this package (it takes ~20 s to fill).

The demo runs in Kafka mode (the mixer as front door, two workers, a real broker) so that the
mixer dashboard's Kafka panels have data too; every other metric is the same as in local mode."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from mixer.demo.runner import Demo, DemoOptions

# The demo mesh's calls; each also gets TCP connection reports, as a service with a TCP port would.
EDGES = (("frontend-v1", "catalog-v1", "catalog"), ("catalog-v1", "reviews-v1", "reviews"),
         ("catalog-v1", "reviews-v2", "reviews"))


def tcp_bags() -> list[dict[str, Any]]:
    """TCP connection reports shaped like Envoy's TCP access log entries, from both sides of each edge."""
    bags = []
    for source, destination, service in EDGES:
        for kind in ("outbound", "inbound"):
            for event in ("open", "close"):
                bags.append({
                    "context.protocol": "tcp", "context.reporter.kind": kind, "connection.event": event,
                    "source.workload.name": source, "source.workload.namespace": "default",
                    "destination.workload.name": destination, "destination.workload.namespace": "default",
                    "destination.service.host": f"{service}.default.svc.cluster.local",
                    "destination.service.name": service, "destination.service.namespace": "default",
                    "connection.sent.bytes": 1200, "connection.received.bytes": 300,
                })
    # a TCP-only service: no istio_requests_total series names it (the service and workload
    # dashboards must still offer it)
    bags.append({
        "context.protocol": "tcp", "context.reporter.kind": "inbound", "connection.event": "close",
        "source.workload.name": "reviews-v1", "source.workload.namespace": "default",
        "destination.workload.name": "ratings-db-v1", "destination.workload.namespace": "storage",
        "destination.service.host": "ratings-db.storage.svc.cluster.local",
        "destination.service.name": "ratings-db", "destination.service.namespace": "storage",
        "connection.sent.bytes": 10, "connection.received.bytes": 20,
    })
    return bags


@pytest.fixture(scope="package")
def demo() -> Iterator[Demo]:
    stack = Demo(DemoOptions(any_ports=True, rate=20, scrape_interval="1s", kafka=True))
    try:
        stack.start()
        assert stack.prometheus is not None, "the prometheus binary is needed (Debian package prometheus)"
        body = json.dumps({"attributes": tcp_bags()}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{stack.http_port}/v1/report", body,
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200
        # Prometheus scrapes first after ~5 s; rate() needs two samples in its window of every series.
        deadline = time.monotonic() + 90
        ready = ("min(count_over_time(istio_requests_total[1m])) >= 3",
                 "min(count_over_time(istio_tcp_sent_bytes_total[1m])) >= 3",
                 "min(count_over_time(mixer_checks_total[1m])) >= 3",
                 "min(count_over_time(mixer_kafka_consumer_lag[1m])) >= 3",
                 "min(count_over_time(mixer_kafka_committed_bags_total[1m])) >= 3")
        while not all(stack.prometheus.query(q) for q in ready):
            assert time.monotonic() < deadline, "Prometheus did not collect the mesh's metrics"
            time.sleep(0.5)
        assert "kafka" in stack.banner() and len(stack.workers) == 2
        yield stack
    finally:
        pids = stack.pids()
        stack.stop()
        left = [pid for pid in pids if _alive(pid)]
        assert not left, f"still running after stop: {left}"  # broker and workers included


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
