"""The front doors in process: real grpc.aio and aiohttp listeners on free loopback ports."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from adapters.memory import MemoryHandler
from mixer.frontdoors import FrontDoorOptions, GrpcListener, HttpListener, standard_doors
from mixer.processes import free_port
from mixer.runtime import Runtime

MESH = Path(__file__).parent / "testdata" / "mesh.yaml"


class Mixer:
    def __init__(self, runtime: Runtime, doors: GrpcListener, channel: grpc.aio.Channel, http: HttpListener) -> None:
        self.runtime = runtime
        self.doors = doors
        self.channel = channel
        self.http_base = f"http://127.0.0.1:{http.port}"

    def unary(self, method: str) -> Any:
        return self.channel.unary_unary(method)  # raw bytes in and out

    def bags(self) -> list[dict[str, Any]]:
        handler = self.runtime.snapshot.slots["capture.handler.istio-system"].handler
        assert isinstance(handler, MemoryHandler)
        return [dict(i.fields["variables"]) for i in handler.instances]

    def rejected(self, front_door: str) -> float:
        value = self.runtime.metrics.registry.get_sample_value("mixer_rejected_bags_total", {"front_door": front_door})
        return value or 0.0


@pytest.fixture
async def mixer(tmp_path: Path) -> AsyncIterator[Mixer]:
    async with running_mixer(tmp_path, FrontDoorOptions(port=free_port(), trust_peer_headers=True)) as started:
        yield started


@contextlib.asynccontextmanager
async def running_mixer(tmp_path: Path, options: FrontDoorOptions) -> AsyncIterator[Mixer]:
    """The test mesh's runtime behind both listeners, the gRPC one on ``options.port``."""
    config = tmp_path / "mesh.yaml"
    config.write_text(MESH.read_text().replace("CAPTURE_PATH", ""))
    runtime = await Runtime.load([str(config)])
    standard = standard_doors(runtime, options)
    doors = GrpcListener(runtime, standard, options)
    http = HttpListener(runtime, standard, "127.0.0.1", free_port(), limits=options.limits)
    await doors.start()
    await http.start()
    port = doors.port
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Mixer(runtime, doors, channel, http)
    finally:
        await channel.close()
        await http.stop()
        await doors.stop()
        await runtime.close()
