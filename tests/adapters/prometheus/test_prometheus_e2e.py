"""End to end: Envoy sidecars -> mixer (default config) -> /metrics -> a real Prometheus; PromQL answers
equal the calls made, per reporter, source, destination and response code."""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mixer.demo import app
from mixer.demo.config import write_config
from mixer.demo.mesh import Mesh
from mixer.demo.prometheus import PrometheusServer, scrape_config
from mixer.processes import free_port, start, stop, wait_for_port

Key = tuple[str, str, str, str]  # reporter, source_workload, destination_workload, response_code


@pytest.fixture
def mesh_and_prometheus(tmp_path: Path) -> Iterator[tuple[Mesh, PrometheusServer]]:
    http, grpc, metrics = free_port(), free_port(), free_port()
    config = write_config(tmp_path / "config", f"127.0.0.1:{metrics}")
    mixer = start(
        [sys.executable, "-m", "mixer.cli", "serve", "--config", str(config), "--port", str(http), "--grpc-port", str(grpc),
         "--trust-peer-headers", "--watch-interval", "0"],
        str(tmp_path / "mixer.log"),
    )
    mesh = Mesh(tmp_path / "sidecars", grpc, fail_every=5)
    prometheus: PrometheusServer | None = None
    try:
        for port in (grpc, metrics):
            wait_for_port(port, proc=mixer)
        mesh.start()  # from the test's thread, which outlives the sidecars
        # Its port is picked only now, just before it binds: a port picked earlier was once taken by
        # something started in between (the sidecars bind ports of their own).
        prometheus = PrometheusServer(scrape_config(f"127.0.0.1:{metrics}", "1s"), free_port(), tmp_path / "prometheus")
        prometheus.start()
        prometheus.wait_ready()
        yield mesh, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        mesh.stop()
        stop(mixer)


def expected_from(statuses: collections.Counter[int], reviews_v1: int, reviews_v2: collections.Counter[int]) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for code, count in statuses.items():
        out[("destination", "unknown", "frontend-v1", str(code))] = count
        for reporter in ("source", "destination"):
            out[(reporter, "frontend-v1", "catalog-v1", str(code))] = count
    for reporter in ("source", "destination"):
        out[(reporter, "catalog-v1", "reviews-v1", "200")] = reviews_v1
        for code, count in reviews_v2.items():
            out[(reporter, "catalog-v1", "reviews-v2", str(code))] = count
    return out


def answer(prometheus: PrometheusServer, metric: str) -> dict[Key, float]:
    result = prometheus.query(
        f"sum by (reporter, source_workload, destination_workload, response_code) ({metric})"
    )
    return {
        (r["metric"]["reporter"], r["metric"]["source_workload"], r["metric"]["destination_workload"],
         r["metric"]["response_code"]): float(r["value"][1])
        for r in result
    }


def test_promql_counts_match_the_calls_made(mesh_and_prometheus: tuple[Mesh, PrometheusServer]) -> None:
    mesh, prometheus = mesh_and_prometheus
    statuses: collections.Counter[int] = collections.Counter()
    for path in ["/"] * 10 + ["/items/missing"] * 3 + ["/admin"] * 2:
        statuses[app.call(mesh.entry_port, path)] += 1
    # catalog alternates reviews-v1, reviews-v2; v2 fails its 5th request: the 10th page is a 502.
    assert statuses == {200: 9, 502: 1, 404: 3, 403: 2}
    expected = expected_from(statuses, reviews_v1=5, reviews_v2=collections.Counter({200: 4, 503: 1}))

    deadline = time.monotonic() + 60  # sidecars flush access logs every 0.5 s; Prometheus scrapes every 1 s
    got: dict[Key, float] = {}
    while got != expected and time.monotonic() < deadline:
        got = answer(prometheus, "istio_requests_total")
        time.sleep(0.5)
    assert got == expected
    assert answer(prometheus, "istio_request_duration_seconds_count") == expected
    denied = prometheus.query('sum(istio_requests_total{reporter="destination",destination_workload="catalog-v1",'
                              'response_code="403",response_flags="UAEX"})')
    assert float(denied[0]["value"][1]) == 2  # denied by the demo policy at catalog's ext_authz
