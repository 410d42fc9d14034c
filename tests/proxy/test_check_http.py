"""ext_authz over plain HTTP through real Envoy: sidecars whose ext_authz asks ``mixer serve
--check-http-port`` get the same answers as over gRPC (rules on the caller's identity, quotas)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mixer.processes import free_port, wait_for_port
from proxy import EnvoyProcess, Inbound, Outbound, SidecarSpec, write_bootstrap
from tests.proxy.support import MixerProcess, Upstream, get, wait_until


@dataclass
class Mesh:
    mixer: MixerProcess
    a_to_b: int
    a_to_c: int


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir = tmp_path_factory.mktemp("check-http")
    app = Upstream()
    check_port = free_port()
    mixer = MixerProcess(workdir, ("--trust-peer-headers", "--check-http-port", str(check_port)))
    mixer.start()
    wait_for_port(check_port, 30, mixer.proc)
    ports = {name: free_port() for name in ("b", "c", "a_b", "a_c")}
    common = {"mixer_port": mixer.grpc_port, "tracing": False}
    specs = [
        SidecarSpec(workload="a-v1", outbound=(Outbound("b", ports["a_b"], "127.0.0.1", ports["b"]),
                                              Outbound("c", ports["a_c"], "127.0.0.1", ports["c"])), **common),
        # served policy too: the mixer serves back this sidecar's HTTP ext_authz config (a quota rule
        # can fire here, so it stays on)
        SidecarSpec(workload="b-v1", inbound=(Inbound(ports["b"], app.port),), quotas=("requestcount",),
                    check_http_port=check_port, policy_discovery=True, **common),
        SidecarSpec(workload="c-v1", inbound=(Inbound(ports["c"], app.port),), check_http_port=check_port,
                    **common),
    ]
    envoys = []
    try:
        for spec in specs:
            envoy = EnvoyProcess(write_bootstrap(spec, workdir / f"{spec.workload}.yaml"),
                                 log_path=workdir / f"{spec.workload}.log")
            envoy.start()
            envoys.append(envoy)
        for envoy in envoys:
            envoy.wait_ready()
        yield Mesh(mixer, ports["a_b"], ports["a_c"])
    finally:
        for envoy in envoys:
            envoy.close()
        mixer.stop()
        app.close()


def test_allowed_request_is_served_and_reported(mesh: Mesh) -> None:
    assert get(mesh.a_to_b, "/hello-http")[0] == 200
    wait_until(lambda: len([b for b in mesh.mixer.bags() if b["path"] == "/hello-http"]) >= 2, what="2 bags")
    assert 'mixer_checks_total{front_door="ext_authz_http",result="ok"}' in mesh.mixer.metrics()


def test_rule_on_the_callers_identity_denies_over_http(mesh: Mesh) -> None:
    status, _, body = get(mesh.a_to_c, "/secret-http")
    assert status == 403
    assert b"a-v1 may not call c-v1" in body


def test_quota_answers_429_after_its_limit_over_http(mesh: Mesh) -> None:
    codes = [get(mesh.a_to_b, "/quota/http")[0] for _ in range(4)]
    assert codes == [200, 200, 200, 429]  # memquota requestcount: maxAmount 3
