"""Served policy through real Envoy: sidecars written with ``policy_discovery`` get their inbound
ext_authz and RBAC filters from the mixer (ECDS). No Check is made where no rule can fire; a deny
rule edited in while traffic flows takes effect within the watch interval plus one second, with no
Envoy restart and no request served after that which the rule denies."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mixer.processes import free_port, http_get
from proxy import EnvoyProcess, Inbound, Outbound, SidecarSpec, write_bootstrap
from tests.proxy.support import MixerProcess, Upstream, capture_only, get, wait_until

WATCH_INTERVAL = 1.0

DENY_HANDLER = """
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny, namespace: istio-system}
spec: {compiledAdapter: denier, params: {status: {code: 7, message: "RULE_MESSAGE"}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: denyall, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: deny, namespace: istio-system}
spec:
  match: RULE_MATCH
  actions: [{handler: deny, instances: [denyall]}]
"""


def deny_rule(match: str, message: str) -> str:
    return DENY_HANDLER.replace("RULE_MATCH", match).replace("RULE_MESSAGE", message)


@dataclass
class Mesh:
    mixer: MixerProcess
    a_to_b: int
    a_to_c: int
    c_inbound: int
    envoys: dict[str, EnvoyProcess] = field(default_factory=dict)

    def set_rules(self, extra: str) -> float:
        """Rewrite the mixer's config; returns when it was written (time.monotonic)."""
        self.mixer.config.write_text(capture_only(self.mixer.capture) + extra)
        return time.monotonic()

    def envoy_stat(self, workload: str, suffix: str) -> int:
        """Sum of the counters of ``workload``'s Envoy whose name ends with ``suffix``."""
        answer = http_get(f"http://{self.envoys[workload].admin_address}/stats?filter={re.escape(suffix)}$")
        assert answer is not None and answer[0] == 200
        return sum(int(value) for value in re.findall(rf"{re.escape(suffix)}: (\d+)", answer[1].decode()))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir: Path = tmp_path_factory.mktemp("served-policy")
    app = Upstream()
    mixer = MixerProcess(workdir, ("--trust-peer-headers", "--watch-interval", str(WATCH_INTERVAL)))
    mixer.config.write_text(capture_only(mixer.capture))
    mixer.start()
    ports = {name: free_port() for name in ("b", "c", "a_b", "a_c")}
    specs = [
        SidecarSpec(workload="a-v1", outbound=(Outbound("b", ports["a_b"], "127.0.0.1", ports["b"]),
                                              Outbound("c", ports["a_c"], "127.0.0.1", ports["c"])),
                    mixer_port=mixer.grpc_port, tracing=False, policy_discovery=True),
        SidecarSpec(workload="b-v1", inbound=(Inbound(ports["b"], app.port),), mixer_port=mixer.grpc_port,
                    tracing=False, policy_discovery=True),
        SidecarSpec(workload="c-v1", inbound=(Inbound(ports["c"], app.port),), mixer_port=mixer.grpc_port,
                    tracing=False, policy_discovery=True),
    ]
    built = Mesh(mixer, ports["a_b"], ports["a_c"], ports["c"])
    try:
        for spec in specs:  # from this thread, which outlives the module (Envoy's PDEATHSIG)
            envoy = EnvoyProcess(write_bootstrap(spec, workdir / f"{spec.workload}.yaml"),
                                 log_path=workdir / f"{spec.workload}.log")
            envoy.start()
            built.envoys[spec.workload] = envoy
        for envoy in built.envoys.values():
            envoy.wait_ready()
        yield built
    finally:
        for envoy in built.envoys.values():
            envoy.close()
        mixer.stop()
        app.close()


def _served_off(mesh: Mesh, workload: str) -> bool:
    """True when a request that no rule denies passes ``workload``'s ext_authz without a Check."""
    before = mesh.envoy_stat(workload, "ext_authz.disabled")
    if workload == "b-v1":
        get(mesh.a_to_b, "/probe")
    else:  # from a caller no rule here names
        get(mesh.c_inbound, "/probe", {"x-mixer-workload": "d-v1"})
    return mesh.envoy_stat(workload, "ext_authz.disabled") > before


def _mixer_ext_authz_checks(mesh: Mesh) -> float:
    found = re.findall(r'^mixer_checks_total\{front_door="ext_authz"[^}]*\} (\S+)$', mesh.mixer.metrics(), re.M)
    return sum(float(value) for value in found)


def test_no_check_is_made_where_no_rule_can_fire(mesh: Mesh) -> None:
    # Requests sent before the served config reaches b-v1 are checked; none after it.
    wait_until(lambda: _served_off(mesh, "b-v1"), what="ext_authz switched off on b-v1")
    checks_before = mesh.envoy_stat("b-v1", "ext_authz.ok")
    answered_before = _mixer_ext_authz_checks(mesh)
    for _ in range(5):
        assert get(mesh.a_to_b, "/unchecked")[0] == 200
    assert mesh.envoy_stat("b-v1", "ext_authz.ok") == checks_before
    assert _mixer_ext_authz_checks(mesh) == answered_before
    # telemetry still flows through the access log of both sidecars
    bags = wait_until(lambda: (lambda b: b if len(b) >= 10 else None)(
        [bag for bag in mesh.mixer.bags() if bag["path"] == "/unchecked"]), what="10 bags")
    assert {bag["reporter"] for bag in bags} == {"inbound", "outbound"}


class Traffic:
    """Requests a -> c and a -> b in a loop on a thread, each recorded with when it was sent."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.sent: list[tuple[float, str, int, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for target, port in (("c", self.mesh.a_to_c), ("b", self.mesh.a_to_b)):
                started = time.monotonic()
                status, _, body = get(port, f"/flow/{target}")
                self.sent.append((started, target, status, body))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def after(self, moment: float, target: str) -> list[tuple[int, bytes]]:
        return [(status, body) for started, t, status, body in list(self.sent) if started >= moment and t == target]


def _run_edit(mesh: Mesh, rules: str, settle: float = 1.5) -> tuple[Traffic, float]:
    """Edit the rules while traffic flows; returns the traffic and the moment the rule must hold."""
    restarts = {name: envoy.pid for name, envoy in mesh.envoys.items()}
    with Traffic(mesh) as traffic:
        time.sleep(0.5)
        written = mesh.set_rules(rules)
        deadline = written + WATCH_INTERVAL + 1.0
        time.sleep(deadline - time.monotonic() + settle)
    assert {name: envoy.pid for name, envoy in mesh.envoys.items()} == restarts  # no Envoy restarted
    assert all(envoy.running for envoy in mesh.envoys.values())
    return traffic, deadline


def test_identity_deny_rule_added_while_traffic_flows_is_enforced_by_envoy(mesh: Mesh) -> None:
    traffic, deadline = _run_edit(mesh, deny_rule('destination.workload.name == "c-v1"', "c is closed"))
    to_c, to_b = traffic.after(deadline, "c"), traffic.after(deadline, "b")
    assert to_c and to_b
    assert {status for status, _ in to_c} == {403}
    assert {status for status, _ in to_b} == {200}
    assert all(b"RBAC" in body for _, body in to_c)  # refused by Envoy's RBAC filter, no round trip
    assert mesh.envoy_stat("c-v1", "rbac.denied") > 0
    # the denials are still reported: the inbound access log carries 403
    denied = wait_until(lambda: [bag for bag in mesh.mixer.bags()
                                 if bag["path"] == "/flow/c" and bag["code"] == 403 and bag["reporter"] == "inbound"],
                        what="a reported 403 from c-v1")
    assert denied[0]["destination_workload"] == "c-v1"


def test_deny_rule_on_the_caller_is_enforced_by_envoy_on_the_callers_header(mesh: Mesh) -> None:
    # the mixer trusts peer headers: the caller's sidecar stamps x-mixer-workload, and nothing else sets
    # source.workload.name in a Check, so Envoy's RBAC can test the header instead of asking the mixer
    rule = deny_rule('(source.workload.name | "") == "a-v1" && (destination.workload.name | "") == "c-v1"',
                     "a-v1 may not call c-v1")
    traffic, deadline = _run_edit(mesh, rule)
    to_c, to_b = traffic.after(deadline, "c"), traffic.after(deadline, "b")
    assert to_c and to_b
    assert {status for status, _ in to_c} == {403}
    assert all(b"RBAC" in body for _, body in to_c)
    assert {status for status, _ in to_b} == {200}
    assert _served_off(mesh, "b-v1") and _served_off(mesh, "c-v1")  # no round trip anywhere
    assert get(mesh.c_inbound, "/direct", {"x-mixer-workload": "d-v1"})[0] == 200  # another caller may
    assert get(mesh.c_inbound, "/direct", {"x-mixer-workload": "a-v1"})[0] == 403


def test_request_dependent_deny_rule_switches_ext_authz_on_where_it_can_fire(mesh: Mesh) -> None:
    rule = deny_rule('destination.workload.name == "c-v1" && (request.path | "").startsWith("/flow")',
                     "no flows into c-v1")
    traffic, deadline = _run_edit(mesh, rule)
    to_c, to_b = traffic.after(deadline, "c"), traffic.after(deadline, "b")
    assert to_c and to_b
    assert {status for status, _ in to_c} == {403}
    assert all(b"no flows into c-v1" in body for _, body in to_c)  # the mixer's denier answered
    assert {status for status, _ in to_b} == {200}
    # b-v1 cannot match the rule: still no Check there; c-v1 checks, and serves other paths
    assert _served_off(mesh, "b-v1")
    assert get(mesh.a_to_c, "/other")[0] == 200


def test_removing_the_rule_lets_traffic_through_again(mesh: Mesh) -> None:
    traffic, deadline = _run_edit(mesh, "")
    to_c = traffic.after(deadline, "c")
    assert to_c and {status for status, _ in to_c} == {200}
    wait_until(lambda: _served_off(mesh, "c-v1"), what="ext_authz switched off on c-v1 again")
