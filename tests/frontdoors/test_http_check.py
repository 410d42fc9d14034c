"""ext_authz over plain HTTP in process: the door on a free loopback port, raw HTTP/1.1 from a socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mixer.frontdoors import FrontDoorOptions, Limits
from mixer.frontdoors.http_check import HttpCheckFrontDoor
from mixer.processes import free_port
from mixer.runtime import Runtime

MESH = Path(__file__).parent / "testdata" / "mesh.yaml"


def context(workload: str, quotas: str = "") -> str:
    extensions = {"destination.service.name": workload.split("-")[0]}
    if quotas:
        extensions["mixer.quotas"] = quotas
    return json.dumps({"labels": {"app": workload.split("-")[0], "WORKLOAD_NAME": workload, "NAMESPACE": "default"},
                       "extensions": extensions})


def request(path: str, caller: str, callee: str, quotas: str = "", method: str = "GET", body: bytes = b"") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nhost: {callee}\r\nx-mixer-workload: {caller}\r\n"
            f"x-mixer-check-context: {context(callee, quotas)}\r\ncontent-length: {len(body)}\r\n\r\n")
    return head.encode() + body


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, *raw: bytes) -> None:
        self.writer.write(b"".join(raw))
        await self.writer.drain()

    async def answer(self) -> tuple[int, bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length:"))
        return status, await self.reader.readexactly(length)


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[HttpCheckFrontDoor]:
    config = tmp_path / "mesh.yaml"
    config.write_text(MESH.read_text().replace("CAPTURE_PATH", ""))
    runtime = await Runtime.load([str(config)])
    served = HttpCheckFrontDoor(runtime, FrontDoorOptions(check_http_port=free_port(), trust_peer_headers=True))
    await served.start()
    try:
        yield served
    finally:
        await served.stop()
        await runtime.close()


async def connect(door: HttpCheckFrontDoor) -> Client:
    return Client(*await asyncio.open_connection("127.0.0.1", door.port))


async def test_allows_and_denies_by_rule_on_one_connection(door: HttpCheckFrontDoor) -> None:
    client = await connect(door)
    await client.send(request("/hello", "a-v1", "b-v1"))
    assert await client.answer() == (200, b"")
    await client.send(request("/hello", "a-v1", "c-v1"))
    assert await client.answer() == (403, b"a-v1 may not call c-v1\n")
    await client.send(request("/hello", "d-v1", "c-v1"))  # another caller may
    assert (await client.answer())[0] == 200


async def test_quota_named_in_the_context_is_allocated(door: HttpCheckFrontDoor) -> None:
    client = await connect(door)
    statuses = []
    for _ in range(4):
        await client.send(request("/quota/x", "a-v1", "b-v1", quotas="requestcount"))
        statuses.append((await client.answer())[0])
    assert statuses == [200, 200, 200, 429]  # memquota requestcount: maxAmount 3


async def test_pipelined_requests_and_bodies_are_answered_in_order(door: HttpCheckFrontDoor) -> None:
    client = await connect(door)
    await client.send(request("/one", "a-v1", "c-v1", method="POST", body=b"12345"),
                      request("/two", "a-v1", "b-v1"), request("/three", "a-v1", "c-v1"))
    assert [(await client.answer())[0] for _ in range(3)] == [403, 200, 403]


async def test_requests_split_across_packets(door: HttpCheckFrontDoor) -> None:
    client = await connect(door)
    raw = request("/split", "a-v1", "c-v1")
    for cut in (5, 40, len(raw)):
        await client.send(raw[:cut])
        raw = raw[cut:]
        await asyncio.sleep(0.01)
    assert (await client.answer())[0] == 403


@pytest.mark.parametrize("raw", [
    b"NONSENSE\r\n\r\n",
    b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET / HTTP/1.1\r\nx-mixer-check-context: {not json\r\n\r\n",
    b"GET / HTTP/1.1\r\nx-mixer-check-context: {\"labels\": []}\r\n\r\n",
    b"GET / HTTP/1.1\r\ncontent-length: many\r\n\r\n",
])
async def test_a_malformed_request_is_refused_and_counted(door: HttpCheckFrontDoor, raw: bytes) -> None:
    rejected_before = door._runtime.metrics.registry.get_sample_value(  # noqa: SLF001 - the door's own runtime
        "mixer_rejected_bags_total", {"front_door": "ext_authz_http"}) or 0.0
    client = await connect(door)
    await client.send(raw)
    status, _ = await client.answer()
    assert status == 400
    if b"content-length: many" not in raw:  # refused before it became a check: counted as a rejected bag
        after = door._runtime.metrics.registry.get_sample_value(  # noqa: SLF001
            "mixer_rejected_bags_total", {"front_door": "ext_authz_http"})
        assert after == rejected_before + 1
    # the door keeps serving other connections
    other = await connect(door)
    await other.send(request("/after", "a-v1", "b-v1"))
    assert (await other.answer())[0] == 200


async def test_an_oversized_head_closes_the_connection(door: HttpCheckFrontDoor) -> None:
    client = await connect(door)
    await client.send(b"GET / HTTP/1.1\r\nx-big: " + b"a" * 70_000)
    assert (await client.answer())[0] == 431
    assert await client.reader.read() == b""


@pytest.fixture
async def limited_door(tmp_path: Path) -> AsyncIterator[HttpCheckFrontDoor]:
    config = tmp_path / "mesh.yaml"
    config.write_text(MESH.read_text().replace("CAPTURE_PATH", ""))
    runtime = await Runtime.load([str(config)])
    limits = Limits(max_inflight_requests=2, max_body_bytes=1000)
    served = HttpCheckFrontDoor(runtime, FrontDoorOptions(check_http_port=free_port(), trust_peer_headers=True,
                                                          limits=limits))
    await served.start()
    try:
        yield served
    finally:
        await served.stop()
        await runtime.close()


def _counted(door: HttpCheckFrontDoor, name: str, labels: dict[str, str]) -> float:
    return door._runtime.metrics.registry.get_sample_value(name, labels) or 0.0  # noqa: SLF001


async def test_many_pipelined_requests_are_all_answered_in_order(limited_door: HttpCheckFrontDoor) -> None:
    """Past 16 queued the connection is read no further until answered: nothing is lost or reordered."""
    client = await connect(limited_door)
    callees = ["b-v1", "c-v1"] * 30
    await client.send(*(request(f"/p/{n}", "a-v1", callee) for n, callee in enumerate(callees)))
    assert [(await client.answer())[0] for _ in callees] == [200, 403] * 30


async def test_checks_past_the_inflight_count_are_shed_and_counted(limited_door: HttpCheckFrontDoor) -> None:
    labels = {"front_door": "ext_authz_http", "reason": "inflight_requests"}
    before = _counted(limited_door, "mixer_shed_requests_total", labels)
    held = [limited_door.admission.try_enter(10) for _ in range(2)]  # two checks in flight elsewhere
    assert held == [None, None]
    client = await connect(limited_door)
    try:
        await client.send(request("/busy", "a-v1", "b-v1"))
        status, body = await client.answer()
        assert status == 429 and b"inflight_requests" in body
        assert _counted(limited_door, "mixer_shed_requests_total", labels) == before + 1
    finally:
        for _ in held:
            limited_door.admission.leave(10)
    await client.send(request("/free", "a-v1", "b-v1"))  # the same connection, capacity back
    assert (await client.answer())[0] == 200


async def test_a_body_over_the_limit_is_413_and_counted(limited_door: HttpCheckFrontDoor) -> None:
    before = _counted(limited_door, "mixer_rejected_bags_total", {"front_door": "ext_authz_http"})
    client = await connect(limited_door)
    await client.send(request("/big", "a-v1", "b-v1", method="POST", body=b"x" * 1001))
    assert (await client.answer())[0] == 413
    assert await client.reader.read() == b""
    assert _counted(limited_door, "mixer_rejected_bags_total", {"front_door": "ext_authz_http"}) == before + 1
