"""Test helpers for real meshes: a threaded upstream app, HTTP GETs, a TCP echo app, the mixer as a process."""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mixer.processes import free_port, start, stop, wait_for_port

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
MESH_CONFIG = ROOT / "tests" / "frontdoors" / "testdata" / "mesh.yaml"
TRACING_CONFIG = ROOT / "mixer" / "defaultconfig" / "istio-tracing.yaml"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Envoy's upstream pool expects
    disable_nagle_algorithm = True  # else every response waits ~40 ms for a delayed ACK

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({"path": self.path, "server": self.server.name}).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class Upstream:
    """A small threaded HTTP app on a free loopback port; answers every GET with 200 JSON."""

    def __init__(self, name: str = "app") -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)
        self.server.daemon_threads = True
        self.server.name = name  # type: ignore[attr-defined]
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"upstream-{name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One GET to 127.0.0.1:port (a new connection each time); returns status, headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


@dataclass
class Echo:
    """A TCP echo app recording, per finished connection, how many bytes reached it."""

    received: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        echo = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                total = 0
                try:
                    while data := self.request.recv(4096):
                        total += len(data)
                        self.request.sendall(data)
                except OSError:
                    pass
                echo.received.append(total)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def exchange(source_ip: str, port: int, payload: bytes) -> bytes:
    """Connect from ``source_ip``, send ``payload``, return what comes back before the peer closes
    or 5 s pass (b"" when the connection is closed or reset without an answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source_ip, 0)) as sock:
        try:
            sock.sendall(payload)
            got = b""
            while len(got) < len(payload):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                got += chunk
            return got
        except (ConnectionResetError, BrokenPipeError):
            return b""


def wait_until(probe: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy (ALS batches arrive every 0.5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(0.1)


class MixerProcess:
    """``mixer serve`` as a child process with the test mesh config; stop/start keep the ports."""

    def __init__(self, workdir: Path, extra_args: tuple[str, ...] = ("--trust-peer-headers",)) -> None:
        self.workdir = workdir
        self.capture = workdir / "capture.jsonl"
        self.config = workdir / "mesh.yaml"
        self.config.write_text(MESH_CONFIG.read_text().replace("CAPTURE_PATH", str(self.capture)))
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.extra_args = extra_args
        self.proc: Any = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mixer.cli", "serve", "--config", str(self.config),
                "--port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                "--watch-interval", "0", "--log-level", "WARNING", *self.extra_args]

    def start(self) -> None:
        self.proc = start(self.command(), log_path=str(self.workdir / "mixer.log"), cwd=str(ROOT))
        wait_for_port(self.grpc_port, timeout=30, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def bags(self) -> list[dict[str, Any]]:
        """Every bag the capture rule recorded so far (its logentry variables)."""
        if not self.capture.exists():
            return []
        lines = self.capture.read_text().splitlines()
        return [json.loads(line)["fields"]["variables"] for line in lines if line.strip()]

    def metrics(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            return conn.getresponse().read().decode()
        finally:
            conn.close()


def tracing_config(endpoint: str, delivery: str = "{batchTimeout: 200ms}") -> str:
    """The default tracing config, its otlp handler sending to ``endpoint`` with ``delivery``."""
    text = TRACING_CONFIG.read_text()
    assert "endpoint: 127.0.0.1:4317" in text
    text = text.replace("endpoint: 127.0.0.1:4317", f"endpoint: {endpoint}")
    return text.replace("    samplingRatio: 1.0", f"    samplingRatio: 1.0\n    delivery: {delivery}")


def capture_only(capture: Path) -> str:
    """The test mesh config's capture part: every bag recorded to ``capture``, no check rule at all."""
    return MESH_CONFIG.read_text().replace("CAPTURE_PATH", str(capture)).split(
        "\n---\napiVersion: config.istio.io/v1alpha2\nkind: handler\nmetadata: {name: deny")[0]
