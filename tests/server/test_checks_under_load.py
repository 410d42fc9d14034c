"""Checks against a real ``mixer serve`` while reports flood it, and the connection caps.

Checks run on a loop of their own (``mixer.frontdoors.lanes``): every check door must keep answering,
correctly, while report streams are in flight on every report door; quota state stays exact whichever
door allocates; a config reload reaches both loops; past ``--max-connections`` a connection is
answered 429 and counted. Deadlines are generous: timing belongs to ``bench/overload.py``.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2

from mixer.processes import free_port, start, stop, wait_for_port

CHECK_DEADLINE = 20.0  # seconds: answered at all, and correctly, while the flood is in flight
MAX_CONNECTIONS = 24

CONFIG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: sink, namespace: istio-system}
spec: {compiledAdapter: noop}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: count, namespace: istio-system}
spec:
  compiledTemplate: metric
  params:
    value: "1"
    dimensions: {src: source.workload.name | "unknown", dst: destination.workload.name | "unknown",
                  path: request.path | "", code: response.code | 0}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: all, namespace: istio-system}
spec:
  actions: [{handler: sink, instances: [count]}]
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny, namespace: istio-system}
spec: {compiledAdapter: denier, params: {status: {code: 7, message: no %(denied)s for you}, validDuration: 1s}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: deny-one, namespace: istio-system}
spec:
  match: destination.workload.name == "%(denied)s"
  actions: [{handler: deny, instances: [nothing]}]
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: q, namespace: istio-system}
spec: {compiledAdapter: memquota, params: {quotas: [{name: rq.instance.istio-system, maxAmount: 5, validDuration: 1h}]}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: rq, namespace: istio-system}
spec: {compiledTemplate: quota, params: {dimensions: {d: destination.workload.name | ""}}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: quota, namespace: istio-system}
spec:
  actions: [{handler: q, instances: [rq]}]
"""

AUTHZ = "/envoy.service.auth.v3.Authorization/Check"
NATIVE_CHECK = "/mixer.v1.Mixer/Check"
NATIVE_REPORT = "/mixer.v1.Mixer/Report"


@dataclass
class Server:
    proc: object
    http_port: int
    grpc_port: int
    check_port: int
    config: Path

    def post(self, path: str, payload: object, timeout: float = 30) -> tuple[int, dict[str, object]]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=json.dumps(payload).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def metric(self, name: str, labels: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=30) as reply:
            text = reply.read().decode()
        for line in text.splitlines():
            if line.startswith(f"{name}{{{labels}}} "):
                return float(line.split()[-1])
        return 0.0


def _write_config(path: Path, denied: str) -> None:
    path.write_text(CONFIG % {"denied": denied})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("checks")
    config = folder / "config.yaml"
    _write_config(config, "c")
    http_port, grpc_port, check_port = free_port(), free_port(), free_port()
    proc = start(
        [sys.executable, "-m", "mixer.cli", "serve", "--config", str(config), "--port", str(http_port),
         "--grpc-port", str(grpc_port), "--check-http-port", str(check_port), "--watch-interval", "0",
         "--metrics-address", f"127.0.0.1:{free_port()}", "--max-connections", str(MAX_CONNECTIONS)],
        log_path=str(folder / "mixer.log"),
    )
    try:
        for port in (http_port, grpc_port, check_port):
            wait_for_port(port, timeout=30, proc=proc)
        yield Server(proc, http_port, grpc_port, check_port, config)
    finally:
        stop(proc)
    assert proc.returncode == 0, (folder / "mixer.log").read_text()  # clean exit on SIGTERM


def _authz_request(callee: str) -> bytes:
    request = external_auth_pb2.CheckRequest()
    attrs = request.attributes
    attrs.source.address.socket_address.address = "10.0.0.1"
    attrs.destination.address.socket_address.address = "10.0.0.2"
    attrs.destination.labels["WORKLOAD_NAME"] = callee
    http = attrs.request.http
    http.method, http.path, http.host = "GET", "/things/1", "things:9080"
    http.headers.update({":path": "/things/1", ":method": "GET"})
    data: bytes = request.SerializeToString()
    return data


def _authz_code(channel: grpc.Channel, callee: str) -> int:
    answer = external_auth_pb2.CheckResponse.FromString(
        channel.unary_unary(AUTHZ)(_authz_request(callee), timeout=CHECK_DEADLINE))
    return int(answer.status.code)


def _check_door(server: Server, callee: str) -> int:
    context = json.dumps({"labels": {"app": callee, "WORKLOAD_NAME": callee, "NAMESPACE": "default"}})
    with socket.create_connection(("127.0.0.1", server.check_port), timeout=CHECK_DEADLINE) as sock:
        sock.sendall(f"GET /things/1 HTTP/1.1\r\nhost: things\r\nx-mixer-check-context: {context}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(4096)
            assert chunk, f"the check door closed without an answer: {reply!r}"
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def _report(bags: int, seed: int) -> dict[str, object]:
    return {"attributes": [{"source.workload.name": f"s{seed}", "destination.workload.name": f"d{i % 7}",
                            "request.path": f"/p/{i}", "response.code": 200} for i in range(bags)]}


class Flood:
    """Reports sent back to back on the HTTP and native gRPC report doors until stopped; counts the
    answers and how many reports are out waiting for one."""

    def __init__(self, server: Server, posters: int = 6, bags: int = 3000) -> None:
        self.server = server
        self.bags = bags
        self.answers: Counter[str] = Counter()
        self.waiting = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._http, args=(n,), daemon=True) for n in range(posters)]
        self._threads += [threading.Thread(target=self._grpc, args=(n,), daemon=True) for n in range(2)]

    def __enter__(self) -> Flood:
        for thread in self._threads:
            thread.start()
        deadline = time.monotonic() + 30
        while self.waiting < len(self._threads) // 2:  # the flood is in flight before any check is asked
            assert time.monotonic() < deadline, "the flood never got going"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def _count(self, waiting: int, answer: str | None = None) -> None:
        with self._lock:
            self.waiting += waiting
            if answer is not None:
                self.answers[answer] += 1

    def _http(self, n: int) -> None:
        body = _report(self.bags, n)
        while not self._stop.is_set():
            self._count(1)
            try:
                status, _ = self.server.post("/v1/report", body, timeout=120)
                self._count(-1, str(status))
            except OSError as exc:  # refused past --max-connections, or reset while refused
                self._count(-1, type(exc).__name__)

    def _grpc(self, n: int) -> None:
        body = json.dumps(_report(self.bags, 100 + n)).encode()
        with grpc.insecure_channel(f"127.0.0.1:{self.server.grpc_port}",
                                   options=[("grpc.max_send_message_length", 8 << 20)]) as channel:
            report = channel.unary_unary(NATIVE_REPORT)
            while not self._stop.is_set():
                self._count(1)
                try:
                    report(body, timeout=120)
                    self._count(-1, "OK")
                except grpc.RpcError as err:
                    self._count(-1, err.code().name)


def test_every_check_door_answers_correctly_while_reports_flood_in(server: Server) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        channel_ready = grpc.channel_ready_future(channel)
        channel_ready.result(timeout=30)
        with Flood(server) as flood:
            for _ in range(5):
                assert flood.waiting > 0  # reports were in flight while each round of checks was asked
                assert _authz_code(channel, "b") == 0
                assert _authz_code(channel, "c") == 7
                native = json.loads(channel.unary_unary(NATIVE_CHECK)(
                    json.dumps({"attributes": {"destination.workload.name": "c"}}).encode(), timeout=CHECK_DEADLINE))
                assert native["status"]["code"] == 7 and "no c for you" in native["status"]["message"]
                assert _check_door(server, "b") == 200
                assert _check_door(server, "c") == 403
        # Reports were dispatched too, on both report doors (the gRPC one handed over to the report loop).
        assert flood.answers["200"] > 0 and flood.answers["OK"] > 0, flood.answers
    assert set(flood.answers) <= {"200", "429", "OK", "RESOURCE_EXHAUSTED", "ConnectionResetError",
                                  "RemoteDisconnected", "BrokenPipeError"}, flood.answers


def test_quota_is_exact_across_doors_on_both_loops(server: Server) -> None:
    """One owner of the memquota state: the native HTTP check (report loop's listener) and the native
    gRPC check (check loop's listener) draw from the same window, never more than its 5."""
    ask = {"attributes": {"destination.workload.name": "quota-test"}, "quotas": {"rq.instance.istio-system": {}}}
    granted = 0
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        check = channel.unary_unary(NATIVE_CHECK)
        for _ in range(4):
            status, answer = server.post("/v1/check", ask)
            assert status == 200
            granted += answer["quotas"]["rq.instance.istio-system"]["granted_amount"]  # type: ignore[index]
            over_grpc = json.loads(check(json.dumps(ask).encode(), timeout=CHECK_DEADLINE))
            granted += over_grpc["quotas"]["rq.instance.istio-system"]["granted_amount"]
    assert granted == 5


def test_a_reload_reaches_the_check_doors(server: Server) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        assert _authz_code(channel, "e") == 0
        _write_config(server.config, "e")
        try:
            server.proc.send_signal(signal.SIGHUP)  # type: ignore[attr-defined]
            deadline = time.monotonic() + 30
            while _authz_code(channel, "e") != 7:
                assert time.monotonic() < deadline, "SIGHUP's config never reached ext_authz"
                time.sleep(0.1)
            assert _check_door(server, "e") == 403
            assert _authz_code(channel, "c") == 0
        finally:
            _write_config(server.config, "c")
            server.proc.send_signal(signal.SIGHUP)  # type: ignore[attr-defined]
            deadline = time.monotonic() + 30
            while _authz_code(channel, "c") != 7:
                assert time.monotonic() < deadline, "the original config did not come back"
                time.sleep(0.1)


def _refused_past_the_cap(port: int) -> bytes:
    """Open the cap's worth of idle connections, then one more: what does the extra one get?"""
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(MAX_CONNECTIONS)]
    try:
        deadline = time.monotonic() + 10
        while True:  # the server accepts the held ones as its loop gets to them: retry until refused
            with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
                extra.settimeout(0.5)
                try:
                    reply = extra.recv(4096)
                except TimeoutError:
                    reply = b""  # accepted and waiting for a request: not refused (yet)
            if reply or time.monotonic() > deadline:
                return reply
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize("door", ["http", "ext_authz_http"])
def test_connections_past_the_cap_are_answered_429_and_counted(server: Server, door: str) -> None:
    port = server.http_port if door == "http" else server.check_port
    labels = f'front_door="{door}",reason="connections"'
    before = server.metric("mixer_shed_requests_total", labels)
    reply = _refused_past_the_cap(port)
    assert reply.startswith(b"HTTP/1.1 429 "), reply
    assert b"connections" in reply
    # Capacity returns once the held connections are gone.
    deadline = time.monotonic() + 10
    while True:
        try:
            if door == "http":
                assert server.post("/v1/report", _report(1, 0))[0] == 200
            else:
                assert _check_door(server, "b") == 200
            break
        except (AssertionError, OSError):
            assert time.monotonic() < deadline, "capacity did not come back after the connections closed"
            time.sleep(0.05)
    assert server.metric("mixer_shed_requests_total", labels) > before
