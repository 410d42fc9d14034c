"""Served policy for TCP through real Envoy: a ``policy_discovery`` sidecar's inbound TCP listener
gets its network ext_authz filter from the mixer (ECDS). With no check rule that can fire for a TCP
connection to it, the mixer receives no TCP Check; a TCP deny rule added while the listener is up is
enforced within the watch interval plus one second, with no Envoy restart."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mixer.processes import free_port, http_get
from proxy import EnvoyProcess, Inbound, SidecarSpec, write_bootstrap
from tests.proxy.support import Echo, MixerProcess, capture_only, exchange, wait_until

WATCH_INTERVAL = 1.0
CHECKS = 'mixer_checks_total{front_door="ext_authz"'

DENY = """
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: refuse, namespace: istio-system}
spec: {compiledAdapter: denier, params: {status: {code: 7, message: "no database for 127.0.0.2"}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: refuse-db, namespace: istio-system}
spec:
  match: RULE_MATCH
  actions: [{handler: refuse, instances: [nothing]}]
"""
TCP_DENY = DENY.replace("RULE_MATCH", 'destination.workload.name == "db-v1" && source.ip == ip("127.0.0.2")')
# Can fire only for HTTP requests (a TCP Check carries no request attributes): no Check for TCP.
HTTP_ONLY_DENY = DENY.replace("RULE_MATCH", '(request.path | "").startsWith("/admin")')


@dataclass
class TcpMesh:
    mixer: MixerProcess
    envoy: EnvoyProcess
    echo: Echo
    port: int

    def set_rules(self, extra: str) -> float:
        """Rewrite the mixer's config; returns when it was written (time.monotonic)."""
        self.mixer.config.write_text(capture_only(self.mixer.capture) + extra)
        return time.monotonic()

    def stat(self, name: str) -> int:
        """The network ext_authz filter's counter ``name`` (0 until the filter first counts it)."""
        full = f"ext_authz.tcp_ext_authz.{name}"
        answer = http_get(f"http://{self.envoy.admin_address}/stats?filter={re.escape(full)}$")
        assert answer is not None and answer[0] == 200
        found = re.search(rf"^{re.escape(full)}: (\d+)$", answer[1].decode(), re.M)
        return int(found.group(1)) if found else 0

    def served_off(self) -> bool:
        """True when a connection passes the listener's ext_authz without a Check."""
        before = self.stat("disabled")
        assert exchange("127.0.0.1", self.port, b"probe") == b"probe"
        return self.stat("disabled") > before


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TcpMesh]:
    workdir = tmp_path_factory.mktemp("tcp-served-policy")
    echo = Echo()
    mixer = MixerProcess(workdir, ("--watch-interval", str(WATCH_INTERVAL)))
    mixer.config.write_text(capture_only(mixer.capture))
    mixer.start()
    port = free_port()
    spec = SidecarSpec(workload="db-v1", tcp_inbound=(Inbound(port, echo.port),), mixer_port=mixer.grpc_port,
                       tracing=False, policy_discovery=True)
    envoy = EnvoyProcess(write_bootstrap(spec, workdir / "db-v1.yaml"), log_path=workdir / "db-v1.log")
    try:
        envoy.start()  # from this (main) thread, which outlives the module: Envoy's PDEATHSIG follows it
        envoy.wait_ready()
        yield TcpMesh(mixer, envoy, echo, port)
    finally:
        envoy.close()
        mixer.stop()
        echo.close()


def _checks_answered(mesh: TcpMesh) -> float:
    found = re.findall(rf"^{re.escape(CHECKS)}[^}}]*\}} (\S+)$", mesh.mixer.metrics(), re.M)
    return sum(float(value) for value in found)


def test_no_tcp_check_reaches_the_mixer_where_no_rule_can_fire(mesh: TcpMesh) -> None:
    # A connection made before the served config reaches Envoy is checked; none after it.
    wait_until(mesh.served_off, what="the TCP ext_authz switched off by the served policy")
    before = mesh.stat("total")
    answered = _checks_answered(mesh)
    for source in ("127.0.0.1", "127.0.0.2") * 3:
        assert exchange(source, mesh.port, b"SELECT 1\n") == b"SELECT 1\n"
    assert mesh.stat("total") == before
    assert _checks_answered(mesh) == answered  # the mixer answered none of these connections
    # the connections are still reported through the TCP access log
    wait_until(lambda: [bag for bag in mesh.mixer.bags() if bag.get("protocol") == "tcp"],
               what="a TCP access log bag")


class Connections:
    """Connections from 127.0.0.1 and 127.0.0.2 in a loop on a thread, each recorded with when it
    was opened and what came back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent: list[tuple[float, str, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="connections", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for source in ("127.0.0.1", "127.0.0.2"):
                started = time.monotonic()
                self.sent.append((started, source, exchange(source, self.port, b"ping")))

    def __enter__(self) -> Connections:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def after(self, moment: float, source: str) -> list[bytes]:
        return [got for started, s, got in list(self.sent) if started >= moment and s == source]

    def before(self, moment: float, source: str) -> list[bytes]:
        return [got for started, s, got in list(self.sent) if started < moment and s == source]


def _edit_while_connecting(mesh: TcpMesh, rules: str, settle: float = 1.5) -> tuple[Connections, float, float]:
    """Edit the rules while connections flow; returns them, when the edit was written and the
    moment from which it must hold."""
    pid = mesh.envoy.pid
    with Connections(mesh.port) as connections:
        time.sleep(0.5)
        written = mesh.set_rules(rules)
        deadline = written + WATCH_INTERVAL + 1.0
        time.sleep(deadline - time.monotonic() + settle)
    assert mesh.envoy.pid == pid and mesh.envoy.running  # no Envoy restart
    return connections, written, deadline


def test_a_rule_only_http_requests_can_match_keeps_tcp_checks_off(mesh: TcpMesh) -> None:
    mesh.set_rules(HTTP_ONLY_DENY)
    time.sleep(WATCH_INTERVAL + 1.5)
    before = mesh.stat("total")
    assert mesh.served_off()
    assert exchange("127.0.0.2", mesh.port, b"ping") == b"ping"
    assert mesh.stat("total") == before


def test_a_tcp_deny_rule_added_while_the_listener_is_up_is_enforced(mesh: TcpMesh) -> None:
    connections, written, deadline = _edit_while_connecting(mesh, TCP_DENY)
    allowed, denied = connections.after(deadline, "127.0.0.1"), connections.after(deadline, "127.0.0.2")
    assert allowed and denied
    assert set(denied) == {b""}  # closed before any answer
    assert set(allowed) == {b"ping"}
    assert set(connections.before(written, "127.0.0.2")) == {b"ping"}  # open until the rule came
    assert mesh.stat("denied") > 0
    wait_until(lambda: f'{CHECKS},result="denied"}}' in mesh.mixer.metrics(), what="denied TCP Checks counted")


def test_removing_the_rule_switches_the_tcp_check_off_again(mesh: TcpMesh) -> None:
    connections, _, deadline = _edit_while_connecting(mesh, "")
    assert set(connections.after(deadline, "127.0.0.2")) == {b"ping"}
    wait_until(mesh.served_off, what="the TCP ext_authz switched off again")
