"""SIGTERM and SIGHUP on a real `mixer serve`: requests in flight are answered and dispatched,
the Prometheus endpoint stays up for a final scrape, the exit is 0; SIGHUP reloads the config."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mixer.processes import free_port, start, stop, wait_for_port
from tests.server.test_http_api import CONFIG, Server

PROMETHEUS = """
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: prom}
spec:
  compiledAdapter: prometheus
  params:
    address: 127.0.0.1:%(metrics_port)d
    metrics:
    - {name: bags_total, namespace: test, instance_name: count.instance.istio-system, kind: COUNTER,
       label_names: [src, code]}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: count-all}
spec:
  actions: [{handler: prom, instances: [count]}]
"""

HELD = 8
BAGS_EACH = 300


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int, int, Path]:
    records = tmp_path / "records.jsonl"
    port, metrics_port = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG % {"records": records} + PROMETHEUS % {"metrics_port": metrics_port})
    proc = start(
        [sys.executable, "-m", "mixer.cli", "serve", "--config", str(config), "--port", str(port),
         "--grpc-port", str(free_port()), "--watch-interval", "0", *extra],
        log_path=str(tmp_path / "mixer.log"),
    )
    wait_for_port(port, proc=proc)
    wait_for_port(metrics_port, proc=proc)
    return proc, port, metrics_port, records


def _scrape_total(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("test_bags_total{"))


def test_sigterm_answers_requests_in_flight_then_waits_for_a_final_scrape(tmp_path: Path) -> None:
    proc, port, metrics_port, records = _start(tmp_path, "--shutdown-grace", "20")
    body = json.dumps({"attributes": [{"source.workload.name": "held"}] * BAGS_EACH}).encode()
    held = []
    try:
        for _ in range(HELD):  # each request sends half its body before SIGTERM and the rest after
            sock = socket.create_connection(("127.0.0.1", port), timeout=20)
            sock.sendall(f"POST /v1/report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body[:100])
            held.append(sock)
        time.sleep(0.5)  # the server has read their headers: they are in flight
        signaled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with socket.socket() as late:  # no longer accepting
            late.settimeout(2)
            assert late.connect_ex(("127.0.0.1", port)) != 0
        answers = []
        for sock in held:
            sock.sendall(body[100:])
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
            answers.append(reply)
        for reply in answers:
            assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
            assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["accepted"] == BAGS_EACH
        # the metrics endpoint stays up until scraped once everything is dispatched, then the process exits
        scraped = []
        while proc.poll() is None:
            try:
                scraped.append(_scrape_total(metrics_port))
            except OSError:
                pass  # closed between poll() and the scrape: the exit is near
            time.sleep(0.2)
        assert proc.returncode == 0
        assert scraped and scraped[-1] == HELD * BAGS_EACH
        assert time.monotonic() - signaled < 15  # left after the final scrape, not at the end of the grace
    finally:
        for sock in held:
            sock.close()
        stop(proc)
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert sum(1 for line in lines if line["dimensions"][0] == "held") == HELD * BAGS_EACH
    log = (tmp_path / "mixer.log").read_text()
    assert "waiting for a final scrape" in log and "stopped" in log


def test_without_a_scrape_the_exit_comes_at_the_end_of_the_grace(tmp_path: Path) -> None:
    proc, *_ = _start(tmp_path, "--shutdown-grace", "1")
    signaled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert time.monotonic() - signaled >= 1.0


def test_sighup_reloads_the_config(tmp_path: Path) -> None:
    proc, port, _, records = _start(tmp_path)
    try:
        server = Server(port, records)
        check = {"attributes": {"destination.workload.name": "c"}}
        assert server.post("/v1/check", check)[1]["status"]["code"] == 7
        config = tmp_path / "config.yaml"
        config.write_text(config.read_text().replace('== "c"', '== "d"'))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while server.post("/v1/check", check)[1]["status"]["code"] == 7:
            assert time.monotonic() < deadline, "SIGHUP did not reload the config"
            time.sleep(0.1)
        assert proc.poll() is None  # still serving
    finally:
        stop(proc)
