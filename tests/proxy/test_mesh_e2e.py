"""A real mesh: client -> Envoy (a-v1 outbound) -> Envoy (b-v1 / c-v1 inbound) -> app, with the
mixer as a ``mixer serve`` process on loopback. One module-scoped mesh keeps the suite short."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import orjson
import pytest
from envoy.service.auth.v3 import external_auth_pb2

from proxy import EnvoyProcess, Inbound, Outbound, SidecarSpec, write_bootstrap
from tests.proxy.support import MixerProcess, Upstream, get, wait_until
from mixer.processes import free_port


@dataclass
class Mesh:
    mixer: MixerProcess
    a_to_b: int  # a-v1's outbound listener for service b
    a_to_c: int
    b_inbound: int  # fail-closed
    d_inbound: int  # fail-open
    a_to_b_tcp: int  # a-v1's plain TCP outbound to b-v1's TCP inbound


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir = tmp_path_factory.mktemp("mesh")
    app = Upstream()
    mixer = MixerProcess(workdir)
    mixer.start()
    ports = {name: free_port() for name in ("b", "c", "d", "a_b", "a_c", "b_tcp", "a_b_tcp")}
    specs = [
        SidecarSpec(
            workload="a-v1",
            outbound=(
                Outbound("b", ports["a_b"], "127.0.0.1", ports["b"]),
                Outbound("c", ports["a_c"], "127.0.0.1", ports["c"]),
            ),
            tcp_outbound=(Outbound("b", ports["a_b_tcp"], "127.0.0.1", ports["b_tcp"]),),
            mixer_port=mixer.grpc_port,
        ),
        SidecarSpec(workload="b-v1", inbound=(Inbound(ports["b"], app.port),), mixer_port=mixer.grpc_port,
                    quotas=("requestcount",), rate_limits=("ratelimit",),
                    tcp_inbound=(Inbound(ports["b_tcp"], app.port),)),
        SidecarSpec(workload="c-v1", inbound=(Inbound(ports["c"], app.port),), mixer_port=mixer.grpc_port),
        SidecarSpec(workload="d-v1", inbound=(Inbound(ports["d"], app.port),), mixer_port=mixer.grpc_port,
                    fail_open=True),
    ]
    envoys = []
    try:
        # Started from this (main) thread, which outlives the module: Envoy's PDEATHSIG follows it.
        for spec in specs:
            path = write_bootstrap(spec, workdir / f"{spec.workload}.yaml")
            envoy = EnvoyProcess(path, log_path=workdir / f"{spec.workload}.log")
            envoy.start()
            envoys.append(envoy)
        for envoy in envoys:
            envoy.wait_ready()
        yield Mesh(mixer, ports["a_b"], ports["a_c"], ports["b"], ports["d"], ports["a_b_tcp"])
    finally:
        for envoy in envoys:
            envoy.close()
        mixer.stop()
        app.close()


def _bags_for(mesh: Mesh, path: str, count: int) -> list[dict]:
    return wait_until(lambda: (lambda b: b if len(b) >= count else None)(
        [bag for bag in mesh.mixer.bags() if bag["path"] == path]), what=f"{count} bags for {path}")


def test_reports_name_both_workloads_on_both_sides(mesh: Mesh) -> None:
    status, headers, body = get(mesh.a_to_b, "/hello")
    assert status == 200, body
    bags = {bag["reporter"]: bag for bag in _bags_for(mesh, "/hello", 2)}
    assert set(bags) == {"inbound", "outbound"}
    for bag in bags.values():
        assert bag["source_workload"] == "a-v1"
        assert bag["destination_workload"] == "b-v1"
        assert bag["source_namespace"] == bag["destination_namespace"] == "default"
        assert bag["destination_service"] == "b"
        assert bag["code"] == 200
        assert bag["method"] == "GET"
        assert bag["protocol"] == "http"
        assert bag["error_code"] == "-"


def test_tcp_connections_are_reported_by_both_sidecars(mesh: Mesh) -> None:
    status, _, body = get(mesh.a_to_b_tcp, "/over-tcp")  # HTTP bytes, proxied as plain TCP
    assert status == 200, body
    closed = wait_until(lambda: (lambda b: b if len(b) >= 2 else None)(
        [bag for bag in mesh.mixer.bags() if bag["protocol"] == "tcp" and bag["event"] == "close"]),
        what="2 TCP close bags")
    by_reporter = {bag["reporter"]: bag for bag in closed}
    assert by_reporter["outbound"]["source_workload"] == "a-v1"
    assert by_reporter["outbound"]["destination_service"] == "b"
    assert by_reporter["inbound"]["destination_workload"] == "b-v1"
    for bag in by_reporter.values():
        assert bag["received"] > 0
    # each sidecar also logged the connection when its upstream connected
    opened = [bag for bag in mesh.mixer.bags() if bag["protocol"] == "tcp" and bag["event"] == "open"]
    assert {bag["reporter"] for bag in opened} == {"inbound", "outbound"}


def test_rule_denies_a_to_c_while_a_to_b_is_served(mesh: Mesh) -> None:
    status, _, body = get(mesh.a_to_c, "/secret")
    assert status == 403
    assert b"a-v1 may not call c-v1" in body
    assert get(mesh.a_to_b, "/secret")[0] == 200
    denied = [bag for bag in _bags_for(mesh, "/secret", 4) if bag["destination_workload"] == "c-v1"]
    assert {bag["code"] for bag in denied} == {403}
    assert any(bag["error_code"] == "UAEX" for bag in denied)


def test_ext_authz_quota_answers_429_after_its_limit(mesh: Mesh) -> None:
    codes = [get(mesh.a_to_b, "/quota/one")[0] for _ in range(4)]
    assert codes == [200, 200, 200, 429]  # memquota requestcount: maxAmount 3


def test_rate_limit_service_answers_429_after_its_limit(mesh: Mesh) -> None:
    replies = [get(mesh.a_to_b, "/rl/items") for _ in range(3)]
    assert [status for status, _, _ in replies] == [200, 200, 429]  # memquota ratelimit: maxAmount 2
    assert replies[2][1].get("x-envoy-ratelimited") == "true"
    assert replies[0][1].get("x-ratelimit-remaining") == "1"


def test_malformed_grpc_input_is_invalid_argument_and_the_mixer_keeps_serving(mesh: Mesh) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{mesh.mixer.grpc_port}") as channel:
        check = channel.unary_unary("/envoy.service.auth.v3.Authorization/Check")
        with pytest.raises(grpc.RpcError) as caught:
            check(b"\xff\xff\xff\xff", timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        request = external_auth_pb2.CheckRequest()
        request.attributes.context_extensions["response.code"] = "two hundred"
        with pytest.raises(grpc.RpcError) as caught:
            check(request.SerializeToString(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert "response.code" in caught.value.details()  # type: ignore[attr-defined]
        native = channel.unary_unary("/mixer.v1.Mixer/Check")
        answer = orjson.loads(native(orjson.dumps({"attributes": {"request.path": "/ok"}}), timeout=10))
        assert answer["status"]["code"] == 0
    assert get(mesh.a_to_b, "/after-bad-input")[0] == 200
    assert 'mixer_rejected_bags_total{front_door="ext_authz"} 2.0' in mesh.mixer.metrics()


def test_with_the_mixer_stopped_fail_open_serves_and_fail_closed_denies(mesh: Mesh) -> None:
    mesh.mixer.stop()
    try:
        assert get(mesh.b_inbound, "/while-down")[0] == 403
        assert get(mesh.d_inbound, "/while-down")[0] == 200
    finally:
        mesh.mixer.start()
    # Envoy reconnects to the restarted mixer by itself.
    wait_until(lambda: get(mesh.b_inbound, "/back")[0] == 200, what="b-v1 served again")
