"""TCP policy through a real Envoy sidecar: its TCP inbound listener runs Envoy's network ext_authz
filter, the mixer answers with the connection's attributes, and a denial closes the connection
before any of its data reaches the app."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mixer.processes import free_port
from proxy import EnvoyProcess, Inbound, SidecarSpec, write_bootstrap
from tests.proxy.support import Echo, MixerProcess, exchange, wait_until

POLICY = Path(__file__).parent / "testdata" / "tcp_policy.yaml"


@dataclass
class TcpMesh:
    db_port: int
    echo: Echo
    mixer: MixerProcess


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TcpMesh]:
    workdir = tmp_path_factory.mktemp("tcp-policy")
    echo = Echo()
    mixer = MixerProcess(workdir, extra_args=())
    mixer.config.write_text(POLICY.read_text())
    mixer.start()
    port = free_port()
    spec = SidecarSpec(workload="db-v1", tcp_inbound=(Inbound(port, echo.port),), mixer_port=mixer.grpc_port)
    envoy = EnvoyProcess(write_bootstrap(spec, workdir / "db-v1.yaml"), log_path=workdir / "db-v1.log")
    try:
        envoy.start()  # from this (main) thread, which outlives the module: Envoy's PDEATHSIG follows it
        envoy.wait_ready()
        yield TcpMesh(port, echo, mixer)
    finally:
        envoy.close()
        mixer.stop()
        echo.close()


def test_an_allowed_connection_reaches_the_app(mesh: TcpMesh) -> None:
    before = len(mesh.echo.received)
    assert exchange("127.0.0.1", mesh.db_port, b"SELECT 1\n") == b"SELECT 1\n"
    assert wait_until(lambda: mesh.echo.received[before:], what="the app saw the connection end") == [9]


def test_a_denied_connection_is_closed_before_the_app_sees_data(mesh: TcpMesh) -> None:
    before = len(mesh.echo.received)
    assert exchange("127.0.0.2", mesh.db_port, b"SELECT 1\n") == b""
    denied = 'mixer_checks_total{front_door="ext_authz",result="denied"}'
    wait_until(lambda: denied in mesh.mixer.metrics(), what="the mixer counted the denied TCP check")
    # tcp_proxy may open its upstream before the check answers; not a byte is forwarded.
    upstream = wait_until(lambda: mesh.echo.received[before:], what="Envoy closed the upstream side")
    assert upstream == [0]
    # The allowed source still gets through afterwards: the denial was per connection.
    assert exchange("127.0.0.1", mesh.db_port, b"ping") == b"ping"
