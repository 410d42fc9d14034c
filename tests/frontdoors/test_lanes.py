"""The check loop's thread and the hand-over of report methods to the report loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest

from mixer.frontdoors.lanes import CheckThread, handed_over
from mixer.runtime import on_loop


@pytest.fixture
def checks() -> Iterator[CheckThread]:
    thread = CheckThread()
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


async def test_a_coroutine_runs_on_the_check_thread_and_cancels_with_its_caller(checks: CheckThread) -> None:
    here = threading.get_ident()

    async def where() -> int:
        return threading.get_ident()

    assert await checks.run(where()) not in (here, None)
    assert await on_loop(asyncio.get_running_loop(), where()) == here
    started, cancelled = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiting = asyncio.create_task(checks.run(forever()))
    await asyncio.to_thread(started.wait, 10)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await asyncio.to_thread(cancelled.wait, 10)


async def test_report_methods_run_on_the_report_loop_and_streams_are_relayed(checks: CheckThread) -> None:
    report_loop = asyncio.get_running_loop()
    report_thread = threading.get_ident()
    seen: list[tuple[int, Any]] = []

    async def unary(request: bytes, context: Any) -> bytes:
        seen.append((threading.get_ident(), request))
        return request.upper()

    async def stream(requests: AsyncIterator[bytes], context: Any) -> bytes:
        got = [raw async for raw in requests]
        seen.append((threading.get_ident(), got))
        return b",".join(got)

    unary_handler = handed_over(grpc.unary_unary_rpc_method_handler(unary), report_loop)
    stream_handler = handed_over(grpc.stream_unary_rpc_method_handler(stream), report_loop)
    read_on: list[int] = []

    async def messages() -> AsyncIterator[bytes]:  # what the listener receives, on the check loop
        for raw in (b"a", b"b", b"c"):
            read_on.append(threading.get_ident())
            yield raw

    async def on_the_check_loop() -> tuple[bytes, bytes]:
        assert unary_handler.unary_unary is not None and stream_handler.stream_unary is not None
        return (await unary_handler.unary_unary(b"report", None),
                await stream_handler.stream_unary(messages(), None))

    assert await checks.run(on_the_check_loop()) == (b"REPORT", b"a,b,c")
    assert seen == [(report_thread, b"report"), (report_thread, [b"a", b"b", b"c"])]
    assert read_on and all(ident != report_thread for ident in read_on)


def test_only_unary_and_client_streaming_methods_are_handed_over() -> None:
    async def push(requests: Any, context: Any) -> None:
        return None

    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError):
            handed_over(grpc.stream_stream_rpc_method_handler(push), loop)
    finally:
        loop.close()
