"""``mixer serve --workers 2``: whichever worker answers a scrape, it returns the sum over both,
and successive scrapes never go backwards (Prometheus would read a counter reset)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from mixer.processes import free_port, start, stop, wait_for_port
from tests.proxy.support import MESH_CONFIG, ROOT

PROMETHEUS = """
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: count, namespace: istio-system}
spec:
  compiledTemplate: metric
  params: {value: "1", dimensions: {path: request.path | ""}}
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: prom, namespace: istio-system}
spec:
  compiledAdapter: prometheus
  params:
    address: 127.0.0.1:%(port)d
    metrics: [{name: bags_total, namespace: test, instance_name: count.instance.istio-system, kind: COUNTER,
               label_names: [path]}]
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: count-all, namespace: istio-system}
spec:
  actions: [{handler: prom, instances: [count]}]
"""


class Workers:
    def __init__(self, proc: subprocess.Popen[bytes], http_port: int, metrics_port: int) -> None:
        self.proc, self.http_port, self.metrics_port = proc, http_port, metrics_port

    def report(self, bags: int) -> None:
        body = orjson.dumps({"attributes": [{"request.path": "/w"}] * bags})
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/v1/report", body,
                                         {"Content-Type": "application/json", "Connection": "close"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200

    def scrape(self, port: int) -> dict[str, float]:
        """Each scrape on a fresh connection: the kernel picks the worker."""
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Connection": "close"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            text = reply.read().decode()
        samples = {}
        for line in text.splitlines():
            match = re.match(r"^(\S+) (\S+)$", line)
            if match:
                samples[match.group(1)] = float(match.group(2))
        return samples


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    http_port, metrics_port = free_port(), free_port()
    config = tmp_path / "mesh.yaml"
    config.write_text(MESH_CONFIG.read_text().replace("CAPTURE_PATH", "") + PROMETHEUS % {"port": metrics_port})
    proc = start([sys.executable, "-m", "mixer.cli", "serve", "--config", str(config), "--port", str(http_port),
                  "--grpc-port", str(free_port()), "--workers", "2", "--watch-interval", "0",
                  "--shutdown-grace", "1"],
                 log_path=str(tmp_path / "mixer.log"), cwd=str(ROOT))
    try:
        wait_for_port(http_port, timeout=30, proc=proc)
        wait_for_port(metrics_port, timeout=30, proc=proc)
        deadline = time.monotonic() + 30
        while (tmp_path / "mixer.log").read_text().count("HTTP front doors on") < 2:  # both workers serving
            assert time.monotonic() < deadline, (tmp_path / "mixer.log").read_text()
            time.sleep(0.1)
        yield Workers(proc, http_port, metrics_port)
    finally:
        stop(proc, timeout=30)
    assert proc.returncode == 0, (tmp_path / "mixer.log").read_text()


def _per_worker_reports(workers: Workers) -> list[float]:
    """Each worker's own count, from its snapshot file in the shared directory."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(workers.proc.pid)], capture_output=True, text=True)
    argv = Path(f"/proc/{out.stdout.split()[0]}/cmdline").read_bytes().split(b"\0")
    directory = Path(argv[argv.index(b"--metrics-dir") + 1].decode())
    counts = []
    for path in sorted(directory.glob("prom.handler.istio-system.*.json")):
        families = orjson.loads(path.read_bytes())
        counts.append(sum(s[2] for f in families if f["name"] == "test_bags" for s in f["samples"]
                          if s[0] == "test_bags_total"))
    return counts


def test_every_scrape_sums_both_workers(workers: Workers) -> None:
    for _ in range(40):
        workers.report(5)
    time.sleep(1.5)  # every worker has published since its last report
    per_worker = _per_worker_reports(workers)
    assert len(per_worker) == 2 and all(count > 0 for count in per_worker), per_worker  # both took reports
    for _ in range(10):
        prom = workers.scrape(workers.metrics_port)
        assert prom['test_bags_total{path="/w"}'] == 200
        assert prom['mixer_reports_total{front_door="http"}'] == 200
        own = workers.scrape(workers.http_port)  # the native port's /metrics: the collector's own, summed too
        assert own['mixer_reports_total{front_door="http"}'] == 200


def test_scrapes_never_go_backwards_while_reports_flow(workers: Workers) -> None:
    stop_reporting = threading.Event()

    def keep_reporting() -> None:
        while not stop_reporting.is_set():
            workers.report(3)

    reporter = threading.Thread(target=keep_reporting)
    reporter.start()
    try:
        seen = [workers.scrape(workers.metrics_port).get('test_bags_total{path="/w"}', 0.0) for _ in range(60)]
    finally:
        stop_reporting.set()
        reporter.join()
    assert seen[-1] > seen[0]
    assert all(later >= earlier for earlier, later in zip(seen, seen[1:])), seen
