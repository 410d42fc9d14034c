"""Every panel query, variables resolved, against a real Prometheus that scraped the mixer fed by
Envoy sidecars (the demo's mesh) plus TCP reports through the native API: each must parse and
return data. The demo runs in Kafka mode (a front door and two workers on a real broker), the one
set-up where every panel, the Kafka row's included, has something to show; the other panels read
the same metrics in local mode."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mixer.demo.runner import Demo, DemoOptions

from .dashboards import BUILTINS, DASHBOARDS, label_values_query, load, panels, substitute, variable_query



def tcp_bags() -> list[dict[str, Any]]:
    """TCP connection reports shaped like Envoy's TCP access log entries, from both sides."""
    bags = []
    for kind in ("outbound", "inbound"):
        for event in ("open", "close"):
            bags.append({
                "context.protocol": "tcp", "context.reporter.kind": kind, "connection.event": event,
                "source.workload.name": "catalog-v1", "source.workload.namespace": "default",
                "destination.workload.name": "reviews-v1", "destination.workload.namespace": "default",
                "destination.service.host": "reviews.default.svc.cluster.local",
                "destination.service.name": "reviews", "destination.service.namespace": "default",
                "connection.sent.bytes": 1200, "connection.received.bytes": 300,
            })
    return bags


@pytest.fixture(scope="module")
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


def resolve_variables(demo: Demo, dashboard: dict[str, Any]) -> dict[str, str]:
    """Each variable's first value, as Grafana would offer it, earlier variables substituted."""
    assert demo.prometheus is not None
    values = dict(BUILTINS)
    for variable in dashboard["templating"]["list"]:
        match, label = label_values_query(substitute(variable_query(variable), values))
        options = demo.prometheus.label_values(label, match)
        assert options, f"variable {variable['name']} has no values ({variable_query(variable)})"
        values[variable["name"]] = sorted(options)[0]
    return values


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_query_returns_data(demo: Demo, path: Path) -> None:
    assert demo.prometheus is not None
    dashboard = load(path)
    values = resolve_variables(demo, dashboard)
    empty = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            expr = substitute(target["expr"], values)
            result = demo.prometheus.query(expr)  # raises on a parse error
            if not result:
                empty.append(f"{panel['title']} [{target['refId']}]: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)
