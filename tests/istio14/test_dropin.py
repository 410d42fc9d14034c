"""Istio 1.4's own mixer config, as its Helm chart renders it (testdata/mixer-config.yaml), loads
unchanged: `mixer validate` finds no error and `mixer serve` turns a report into Istio's metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mixer.processes import free_port, start, stop, wait_for_port

CONFIG = Path(__file__).parent / "testdata" / "mixer-config.yaml"


def mixer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mixer.cli", *args], capture_output=True, text=True, timeout=60)


def test_validate_finds_no_error_and_says_what_it_skipped() -> None:
    result = mixer("validate", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # One info line per DestinationRule (name, kind, file:line), one warning for kubernetesenv.
    assert f"{CONFIG}:1030:1: info: skipped DestinationRule istio-policy.istio-system" in result.stdout
    assert f"{CONFIG}:1057:1: info: skipped DestinationRule istio-telemetry.istio-system" in result.stdout
    warnings = [line for line in lines if ": warning: " in line]
    assert len(warnings) == 1 and "kubernetesenv" in warnings[0] and "node metadata" in warnings[0], warnings
    assert lines[-1] == "ok: 2 handlers, 11 instances, 8 rules"


def test_validate_strict_turns_other_api_groups_into_errors() -> None:
    result = mixer("validate", "--strict", str(CONFIG))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{CONFIG}:1030:13: apiVersion: DestinationRule istio-policy.istio-system "
        "(networking.istio.io/v1alpha3) is not Mixer config (strict)",
        f"{CONFIG}:1057:13: apiVersion: DestinationRule istio-telemetry.istio-system "
        "(networking.istio.io/v1alpha3) is not Mixer config (strict)",
    ]


@dataclass
class Served:
    http_port: int
    metrics_url: str
    log: Path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    http, grpc, metrics = free_port(), free_port(), free_port()
    # Istio's prometheus handler listens on 0.0.0.0:42422 by default; tests use free loopback ports
    # only, so this copy adds one `address` param. Everything else is the file as rendered.
    text = CONFIG.read_text()
    anchor = "  compiledAdapter: prometheus\n  params:\n"
    assert text.count(anchor) == 1
    config = tmp_path / "mixer-config.yaml"
    config.write_text(text.replace(anchor, f"{anchor}    address: 127.0.0.1:{metrics}\n"))
    log = tmp_path / "mixer.log"
    proc = start([sys.executable, "-m", "mixer.cli", "serve", "--config", str(config), "--port", str(http),
                  "--grpc-port", str(grpc), "--watch-interval", "0"], str(log))
    try:
        for port in (http, metrics):
            wait_for_port(port, proc=proc)
        yield Served(http, f"http://127.0.0.1:{metrics}/metrics", log)
    finally:
        stop(proc)


HTTP_BAG = {
    "context.protocol": "http", "context.reporter.kind": "inbound",
    "source.workload.name": "productpage-v1", "source.workload.namespace": "default",
    "source.labels": {"app": "productpage", "version": "v1"},
    "destination.workload.name": "reviews-v2", "destination.workload.namespace": "default",
    "destination.labels": {"app": "reviews", "version": "v2"},
    "destination.service.host": "reviews.default.svc.cluster.local",
    "destination.service.name": "reviews", "destination.service.namespace": "default",
    "request.host": "reviews:9080", "request.path": "/reviews/0", "request.method": "GET",
    "request.useragent": "python-requests", "request.size": 120, "response.size": 2300,
    "request.time": "2026-01-01T00:00:00Z", "response.time": "2026-01-01T00:00:00.025Z",
    "response.code": 200, "response.duration": "25ms",
}
TCP_BAG = {
    "context.protocol": "tcp", "context.reporter.kind": "outbound", "connection.event": "open",
    "source.workload.name": "reviews-v2", "source.workload.namespace": "default",
    "destination.workload.name": "ratings-v1", "destination.workload.namespace": "default",
    "destination.service.host": "ratings.default.svc.cluster.local", "destination.service.name": "ratings",
    "connection.sent.bytes": 700, "connection.received.bytes": 90,
}


def report(port: int, bags: list[dict[str, object]]) -> dict[str, int]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/report", json.dumps({"attributes": bags}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())  # type: ignore[no-any-return]


def samples(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_serve_turns_a_report_into_istios_metrics(served: Served) -> None:
    answer = report(served.http_port, [HTTP_BAG, TCP_BAG])
    # HTTP: 4 metrics + the access log entry; TCP: bytes sent/received, connection opened, access log.
    assert answer == {"accepted": 2, "instances": 9}
    got = samples(served.metrics_url)

    requests = got["istio_requests_total"]
    assert len(requests) == 1
    labels, value = requests[0]
    assert value == 1
    assert {k: labels[k] for k in ("reporter", "source_workload", "source_app", "destination_workload",
                                   "destination_version", "destination_service", "destination_service_name",
                                   "request_protocol", "response_code", "connection_security_policy")} == {
        "reporter": "destination", "source_workload": "productpage-v1", "source_app": "productpage",
        "destination_workload": "reviews-v2", "destination_version": "v2",
        "destination_service": "reviews.default.svc.cluster.local", "destination_service_name": "reviews",
        "request_protocol": "http", "response_code": "200", "connection_security_policy": "none",
    }
    duration = {lab["le"]: v for lab, v in got["istio_request_duration_seconds_bucket"]}
    assert duration["0.01"] == 0 and duration["0.025"] == 1  # Istio's explicit buckets, 25 ms
    assert [v for _, v in got["istio_request_bytes_sum"]] == [120]
    assert [v for _, v in got["istio_response_bytes_sum"]] == [2300]
    assert [(lab["reporter"], v) for lab, v in got["istio_tcp_sent_bytes_total"]] == [("source", 700)]
    assert [(lab["reporter"], v) for lab, v in got["istio_tcp_received_bytes_total"]] == [("source", 90)]
    assert [v for _, v in got["istio_tcp_connections_opened_total"]] == [1]
    assert "istio_tcp_connections_closed_total" not in got

    # The collector's own metrics under Istio's names, on the same endpoint as Mixer's dashboards expect.
    assert [lab["component"] for lab, v in got["istio_build"] if v == 1] == ["mixer"]
    dispatched = {(lab["adapter"], lab["meshFunction"], lab["error"]) for lab, _ in got["mixer_runtime_dispatches_total"]}
    assert dispatched == {("prometheus", "metric", "false"), ("stdio", "logentry", "false")}
    sizes = {name: [v for _, v in got[name]] for name in ("mixer_config_rule_config_count",
                                                            "mixer_config_handler_config_count")}
    assert sizes == {"mixer_config_rule_config_count": [8], "mixer_config_handler_config_count": [2]}


def test_serve_logs_what_it_skipped_and_the_kubernetesenv_warning(served: Served) -> None:
    deadline = time.monotonic() + 10
    while "kubernetesenv" not in served.log.read_text():
        assert time.monotonic() < deadline, served.log.read_text()
        time.sleep(0.1)
    log = served.log.read_text()
    assert "INFO mixer.server: " in log and "skipped DestinationRule istio-policy.istio-system" in log
    assert "skipped DestinationRule istio-telemetry.istio-system" in log
    assert "WARNING mixer.server: " in log and "kubernetesenv) is recognised but not run" in log
