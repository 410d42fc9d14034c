"""A quota shared by two mixer processes through a real Redis, through real Envoy: two sidecars of
service b, each checking with its own mixer, together serve exactly the limit, then answer 429."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mixer.processes import free_port
from proxy import EnvoyProcess, Inbound, SidecarSpec, write_bootstrap
from tests.proxy.support import MixerProcess, Upstream, get
from tests.redisserver import RedisServer

CONFIG = Path(__file__).parent / "testdata" / "redis_quota.yaml"
LIMIT = 10


@dataclass
class SharedQuotaMesh:
    inbound_ports: list[int]
    mixers: list[MixerProcess]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedQuotaMesh]:
    workdir = tmp_path_factory.mktemp("redis-quota")
    redis_server = RedisServer(workdir)
    redis_server.start()
    app = Upstream()
    mixers: list[MixerProcess] = []
    envoys: list[EnvoyProcess] = []
    try:
        for index in range(2):
            mixer_dir = workdir / f"mixer{index}"
            mixer_dir.mkdir()
            mixer = MixerProcess(mixer_dir, extra_args=())
            mixer.config.write_text(CONFIG.read_text().replace("REDIS_URL", redis_server.url))
            mixer.start()
            mixers.append(mixer)
        ports = [free_port(), free_port()]
        for index, (port, mixer) in enumerate(zip(ports, mixers)):
            spec = SidecarSpec(workload=f"b-v{index + 1}", inbound=(Inbound(port, app.port),),
                               mixer_port=mixer.grpc_port, quotas=("requestcount",))
            envoy = EnvoyProcess(write_bootstrap(spec, workdir / f"b{index}.yaml"), log_path=workdir / f"b{index}.log")
            envoy.start()  # from this (main) thread, which outlives the module: Envoy's PDEATHSIG follows it
            envoys.append(envoy)
        for envoy in envoys:
            envoy.wait_ready()
        yield SharedQuotaMesh(ports, mixers)
    finally:
        for envoy in envoys:
            envoy.close()
        for mixer in mixers:
            mixer.stop()
        app.close()
        redis_server.stop()


def test_two_mixers_share_one_redis_quota_exactly_at_its_limit(mesh: SharedQuotaMesh) -> None:
    statuses: list[tuple[int, int]] = []
    for attempt in range(LIMIT + 6):  # alternate between the two sidecars (and so the two mixers)
        port = mesh.inbound_ports[attempt % 2]
        statuses.append((attempt % 2, get(port, f"/items/{attempt}")[0]))
    assert [s for _, s in statuses] == [200] * LIMIT + [429] * 6
    # Each mixer granted part of the limit: the counter really was shared.
    assert {side for side, status in statuses if status == 200} == {0, 1}
    for mixer in mesh.mixers:
        assert 'mixer_checks_total{front_door="ext_authz"' in mixer.metrics()
