"""A front door and workers as real ``mixer serve`` processes, and a push backend a test can hold."""

from __future__ import annotations

import http.server
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from mixer.processes import free_port, http_get, start, stop, wait_until_ready

REPO = Path(__file__).resolve().parents[2]

WORKER_CONFIG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: prometheus}
spec:
  compiledAdapter: prometheus
  params:
    address: "127.0.0.1:%(prometheus_port)d"
    metrics:
    - {name: reports_total, instance_name: reports.instance.istio-system, kind: COUNTER, label_names: [dst]}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: reports}
spec:
  compiledTemplate: metric
  params: {value: "1", dimensions: {dst: destination.workload.name | "unknown"}}
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: backend}
spec:
  compiledAdapter: httpjson
  params:
    url: "%(backend_url)s"
    delivery: {batchTimeout: 20ms, timeout: 2s, retry: {initialInterval: 200ms, maxInterval: 2s, maxElapsedTime: %(max_elapsed)s}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: calls}
spec:
  compiledTemplate: logentry
  params: {severity: '"info"', timestamp: request.time, variables: {id: request.id | ""}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: all}
spec:
  actions: [{handler: prometheus, instances: [reports]}, {handler: backend, instances: [calls]}]
"""

FRONT_DOOR_CONFIG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: nothing}
spec: {compiledAdapter: noop}
"""


class HeldBackend:
    """A loopback HTTP backend for the httpjson adapter: records request ids; ``hold()`` makes every
    request wait (the backend hangs) until ``release()``; ``down()``/``up()`` close and reopen the port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.ids: list[str] = []
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/logs"

    def up(self) -> None:
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                backend._open.wait()
                with backend._lock:
                    backend.ids.extend(item["variables"]["id"] for item in json.loads(body))
                reply = b'{"rejected": 0}'
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:  # the sender gave up waiting (its attempt timed out) and will retry
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.release()
        self.down()


class Mixer:
    """One ``mixer serve`` process (HTTP API on a free port, no gRPC)."""

    def __init__(self, workdir: Path, name: str, mode: str, bootstrap: str, topic: str, config: str) -> None:
        self.name = name
        self.port = free_port()
        self.config_dir = workdir / name
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "config.yaml").write_text(config)
        self.log = workdir / f"{name}.log"
        self.args = [
            sys.executable, "-m", "tests.kafka.serve_with_httpjson", "serve", "--config", str(self.config_dir),
            "--port", str(self.port), "--no-grpc", "--watch-interval", "0", "--mode", mode,
            "--kafka-bootstrap", bootstrap, "--kafka-topic", topic, "--kafka-group", f"{topic}-workers",
            "--kafka-dead-letter-topic", f"{topic}-dead", "--kafka-session-timeout", "3",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start(self.args, self.log, append=True, cwd=REPO)
        wait_until_ready(lambda: (http_get(f"http://127.0.0.1:{self.port}/readyz") or (0,))[0] == 200,
                         60, self.proc, what=self.name)

    def kill(self) -> None:
        """SIGKILL by PID: no goodbye to the group, no commit, no flush."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None

    def self_metric(self, name: str) -> float:
        return scrape_sum(f"http://127.0.0.1:{self.port}/metrics", name)


def scrape_sum(url: str, name: str) -> float:
    """The sum over every series of ``name`` in a Prometheus text exposition (0 when absent)."""
    answer = http_get(url, timeout=5)
    assert answer is not None and answer[0] == 200, f"{url} did not answer"
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$")
    for line in answer[1].decode().splitlines():
        match = pattern.match(line)
        if match:
            total += float(match.group(1))
    return total


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")
