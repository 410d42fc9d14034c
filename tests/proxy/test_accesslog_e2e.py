"""Access logs from a real mesh: client -> Envoy (a-v1 outbound) -> Envoy (b-v1 inbound) -> app,
with ``mixer serve`` on the default config (Istio's accesslog/tcpaccesslog to a JSON stdout handler).
The lines carry the request's real response code, duration, bytes and workloads."""

from __future__ import annotations

import datetime as dt
import http.server
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from mixer.demo.config import write_config
from mixer.processes import free_port, start, stop, wait_for_port
from proxy import EnvoyProcess, Inbound, Outbound, SidecarSpec, write_bootstrap
from tests.proxy.support import ROOT, get, wait_until

BODY = b"x" * 1234


class _App(http.server.BaseHTTPRequestHandler):
    """``GET /status/CODE?delay=SECONDS``: answers CODE with a 1234-byte body after the delay."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        time.sleep(float(parse_qs(url.query).get("delay", ["0"])[0]))
        code = int(url.path.rsplit("/", 1)[-1]) if url.path.startswith("/status/") else 200
        self.send_response(code)
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@dataclass
class Mesh:
    log: Path  # the mixer's stdout (and stderr)
    a_to_b: int
    a_to_b_tcp: int

    def access_lines(self, instance: str) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log.read_bytes().splitlines():
            if raw.startswith(b"{"):
                line = orjson.loads(raw)
                if line.get("instance") == f"{instance}.instance.istio-system":
                    lines.append(line)
        return lines


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir = tmp_path_factory.mktemp("accesslog-mesh")
    app = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _App)
    app.daemon_threads = True
    threading.Thread(target=app.serve_forever, name="accesslog-app", daemon=True).start()
    config = write_config(workdir / "config", f"127.0.0.1:{free_port()}", policy=False)
    http_port, grpc_port = free_port(), free_port()
    log = workdir / "mixer.log"
    mixer = start([sys.executable, "-m", "mixer.cli", "serve", "--config", str(config), "--port", str(http_port),
                   "--grpc-port", str(grpc_port), "--watch-interval", "0", "--log-level", "WARNING",
                   "--trust-peer-headers"], log_path=str(log), cwd=str(ROOT))
    ports = {name: free_port() for name in ("b", "a_b", "b_tcp", "a_b_tcp")}
    specs = [
        SidecarSpec(workload="a-v1", outbound=(Outbound("b", ports["a_b"], "127.0.0.1", ports["b"]),),
                    tcp_outbound=(Outbound("b", ports["a_b_tcp"], "127.0.0.1", ports["b_tcp"]),), mixer_port=grpc_port),
        SidecarSpec(workload="b-v1", inbound=(Inbound(ports["b"], app.server_address[1]),),
                    tcp_inbound=(Inbound(ports["b_tcp"], app.server_address[1]),), mixer_port=grpc_port),
    ]
    envoys = []
    try:
        wait_for_port(grpc_port, timeout=30, proc=mixer)
        for spec in specs:  # from this long-lived thread: Envoy's PDEATHSIG follows it
            envoy = EnvoyProcess(write_bootstrap(spec, workdir / f"{spec.workload}.yaml"),
                                 log_path=workdir / f"{spec.workload}.log")
            envoy.start()
            envoys.append(envoy)
        for envoy in envoys:
            envoy.wait_ready()
        yield Mesh(log, ports["a_b"], ports["a_b_tcp"])
    finally:
        for envoy in envoys:
            envoy.close()
        stop(mixer)
        app.shutdown()
        app.server_close()


def test_an_http_request_is_logged_by_both_sidecars_with_its_real_values(mesh: Mesh) -> None:
    started = dt.datetime.now(dt.timezone.utc)
    status, _, body = get(mesh.a_to_b, "/status/418?delay=0.3")
    assert (status, len(body)) == (418, len(BODY))
    lines = wait_until(lambda: (lambda found: found if len(found) >= 2 else None)(
        [line for line in mesh.access_lines("accesslog") if line["url"] == "/status/418?delay=0.3"]),
        what="2 access log lines")
    by_reporter = {line["reporter"]: line for line in lines}
    assert set(by_reporter) == {"source", "destination"}  # a-v1 outbound, b-v1 inbound
    for line in by_reporter.values():
        assert line["level"] == "info"
        assert line["responseCode"] == 418
        assert line["method"] == "GET" and line["protocol"] == "http"
        assert line["responseSize"] == len(BODY)
        assert line["sentBytes"] > len(BODY)  # body plus the response headers
        assert line["receivedBytes"] > 0 and line["requestSize"] == 0
        assert line["sourceWorkload"] == "a-v1"
        assert line["destinationWorkload"] == "b-v1"
        assert line["destinationServiceHost"] == "b.default.svc.cluster.local"
        assert line["responseFlags"] == "-"
        latency = line["latency"]  # a Go duration: "301.234ms"
        assert latency.endswith("ms") and 300 <= float(latency[:-2]) < 10_000, latency
        logged = dt.datetime.fromisoformat(line["time"])
        assert started - dt.timedelta(seconds=1) <= logged <= started + dt.timedelta(seconds=10)
        assert dt.datetime.fromisoformat(line["responseTimestamp"]) > logged
    # Envoy's x-request-id travels with the request: both sidecars log the same one.
    assert by_reporter["source"]["requestId"] and by_reporter["source"]["requestId"] == by_reporter["destination"]["requestId"]
    assert by_reporter["source"]["sourceIp"] == "127.0.0.1"


def test_a_tcp_connection_is_logged_with_its_bytes(mesh: Mesh) -> None:
    status, _, body = get(mesh.a_to_b_tcp, "/status/201")  # HTTP bytes, proxied as plain TCP
    assert (status, len(body)) == (201, len(BODY))
    # Sidecars also log a connection when it opens (and every 10 s): the close lines carry the bytes.
    def closed() -> dict[str, Any] | None:
        found = {line["reporter"]: line for line in mesh.access_lines("tcpaccesslog") if line["connectionEvent"] == "close"}
        return found if len(found) >= 2 else None

    by_reporter = wait_until(closed, what="a TCP close line from each sidecar")
    assert set(by_reporter) == {"source", "destination"}
    for line in by_reporter.values():
        assert line["protocol"] == "tcp" and line["connectionEvent"] == "close"
        assert line["sentBytes"] > len(BODY) and line["totalSentBytes"] == line["sentBytes"]
        assert line["receivedBytes"] > 0
    assert by_reporter["destination"]["destinationWorkload"] == "b-v1"
    assert by_reporter["source"]["sourceWorkload"] == "a-v1"
