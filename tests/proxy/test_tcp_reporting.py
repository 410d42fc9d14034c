"""Real Envoy TCP traffic through a sidecar, the mixer on its default config: a connection is
counted as opened when it connects, its bytes are reported while it is open (every report
interval), and the totals at close equal the bytes sent, not a multiple of them."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mixer.config import DEFAULT_CONFIG_DIR
from mixer.processes import free_port, start, stop, wait_for_port
from proxy import EnvoyProcess, Inbound, SidecarSpec, write_bootstrap
from tests.proxy.support import ROOT, wait_until


class Echo:
    """A loopback TCP echo server that closes its side when the client closes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)


@dataclass
class Sidecar:
    tcp_port: int
    metrics_port: int

    def total(self, family: str) -> float:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(family + "{"))


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    workdir = tmp_path_factory.mktemp("tcp")
    echo = Echo()
    grpc_port, metrics_port, tcp_port = free_port(), free_port(), free_port()
    mixer = start([sys.executable, "-m", "mixer.cli", "serve", "--config", str(DEFAULT_CONFIG_DIR),
                   "--port", str(free_port()), "--grpc-port", str(grpc_port),
                   "--metrics-address", f"127.0.0.1:{metrics_port}", "--watch-interval", "0"],
                  log_path=str(workdir / "mixer.log"), cwd=str(ROOT))
    envoy = None
    try:
        wait_for_port(grpc_port, timeout=30, proc=mixer)
        spec = SidecarSpec(workload="db-v1", tcp_inbound=(Inbound(tcp_port, echo.port),), mixer_port=grpc_port,
                           tcp_report_interval="1s", tracing=False)
        envoy = EnvoyProcess(write_bootstrap(spec, workdir / "db.yaml"), log_path=workdir / "envoy.log")
        envoy.start()  # from the main thread, which outlives the module (Envoy's PDEATHSIG)
        envoy.wait_ready()
        yield Sidecar(tcp_port, metrics_port)
    finally:
        if envoy is not None:
            envoy.close()
        stop(mixer)
        echo.sock.close()


def test_a_long_connection_is_counted_open_and_reports_bytes_before_it_closes(sidecar: Sidecar) -> None:
    conn = socket.create_connection(("127.0.0.1", sidecar.tcp_port), timeout=10)
    sent = 0
    try:
        wait_until(lambda: sidecar.total("istio_tcp_connections_opened_total") >= 1, what="a connection opened")
        assert sidecar.total("istio_tcp_connections_closed_total") == 0
        for _ in range(3):
            conn.sendall(b"x" * 1000)
            sent += 1000
            received = 0
            while received < 1000:
                received += len(conn.recv(65536))
        # still open: the periodic entries carry its bytes
        wait_until(lambda: sidecar.total("istio_tcp_received_bytes_total") >= sent, what="bytes while open")
        time.sleep(2.5)  # two more report intervals with the same totals: nothing new may be added
        assert sidecar.total("istio_tcp_received_bytes_total") == sent
        assert sidecar.total("istio_tcp_connections_closed_total") == 0
    finally:
        conn.close()
    wait_until(lambda: sidecar.total("istio_tcp_connections_closed_total") >= 1, what="the connection closed")
    assert sidecar.total("istio_tcp_connections_opened_total") == 1
    assert sidecar.total("istio_tcp_received_bytes_total") == sent
    assert sidecar.total("istio_tcp_sent_bytes_total") == sent
