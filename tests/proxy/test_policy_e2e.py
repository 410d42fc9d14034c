"""Policy through real Envoy sidecars: Istio RBAC allows a-v1 -> b and denies a-v1 -> c naming the
ServiceRole; the list adapter denies a blacklisted source IP. The mixer runs as ``mixer serve``."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mixer.processes import free_port
from proxy import EnvoyProcess, Inbound, Outbound, SidecarSpec, write_bootstrap
from tests.proxy.support import MixerProcess, Upstream, get, wait_until

POLICY = Path(__file__).parent / "testdata" / "policy.yaml"


@dataclass
class Mesh:
    a_to_b: int
    a_to_c: int
    b_inbound: int
    blacklist: Path


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir = tmp_path_factory.mktemp("policy-mesh")
    blacklist = workdir / "blacklist.txt"
    blacklist.write_text("# addresses that may not call anything\n127.0.0.2\n")
    app = Upstream()
    mixer = MixerProcess(workdir)
    mixer.config.write_text(POLICY.read_text().replace("BLACKLIST_PATH", str(blacklist)))
    mixer.start()
    ports = {name: free_port() for name in ("b", "c", "a_b", "a_c")}
    specs = [
        SidecarSpec(workload="a-v1", mixer_port=mixer.grpc_port, outbound=(
            Outbound("b", ports["a_b"], "127.0.0.1", ports["b"]),
            Outbound("c", ports["a_c"], "127.0.0.1", ports["c"]),
        )),
        SidecarSpec(workload="b-v1", inbound=(Inbound(ports["b"], app.port),), mixer_port=mixer.grpc_port),
        SidecarSpec(workload="c-v1", inbound=(Inbound(ports["c"], app.port),), mixer_port=mixer.grpc_port),
    ]
    envoys = []
    try:
        # Started from this (main) thread, which outlives the module: Envoy's PDEATHSIG follows it.
        for spec in specs:
            envoy = EnvoyProcess(write_bootstrap(spec, workdir / f"{spec.workload}.yaml"),
                                 log_path=workdir / f"{spec.workload}.log")
            envoy.start()
            envoys.append(envoy)
        for envoy in envoys:
            envoy.wait_ready()
        yield Mesh(ports["a_b"], ports["a_c"], ports["b"], blacklist)
    finally:
        for envoy in envoys:
            envoy.close()
        mixer.stop()
        app.close()


def get_from(source_ip: str, port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """One GET to 127.0.0.1:port from the loopback address ``source_ip``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source_ip, 0))
    try:
        conn.request("GET", path, headers=headers)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def test_rbac_allows_a_to_b_and_denies_a_to_c_naming_the_role(mesh: Mesh) -> None:
    status, _, body = get(mesh.a_to_b, "/books")
    assert status == 200, body
    status, _, body = get(mesh.a_to_c, "/secret")
    assert status == 403
    assert body.decode().rstrip("\n") == (
        "RBAC: permission denied: ServiceRole 'c-admin' allows GET /secret on service c.default.svc.cluster.local "
        "but its ServiceRoleBinding 'bind-c-admin' does not name user 'a-v1'")


def test_blacklisted_source_ip_is_denied(mesh: Mesh) -> None:
    # Straight to b-v1's inbound, claiming to be a-v1 (which RBAC allows): only the source address differs.
    as_a = {"x-mixer-workload": "a-v1", "x-mixer-namespace": "default"}
    assert get_from("127.0.0.1", mesh.b_inbound, "/books", as_a)[0] == 200
    status, body = get_from("127.0.0.2", mesh.b_inbound, "/books", as_a)
    assert (status, body.rstrip(b"\n")) == (403, b"127.0.0.2 is blacklisted")
    # The list file is re-read every second: lifting the entry lets the address through.
    mesh.blacklist.write_text("127.0.0.3\n")
    wait_until(lambda: get_from("127.0.0.2", mesh.b_inbound, "/books", as_a)[0] == 200, timeout=15,
               what="127.0.0.2 served once the blacklist no longer names it")
