"""The stdio handler never blocks the event loop on a slow stdout: lines wait in a bounded buffer
written by a thread; what does not fit is dropped and counted, so written + dropped == offered."""

from __future__ import annotations

import io
import os
import sys
import threading
import time

import orjson
import pytest

from adapters.stdio import StdioAdapter, StdioHandler
from adapters.stdio.writer import BackgroundWriter
from mixer.sdk import Instance
from tests.adapters.support import env

BATCHES, PER_BATCH = 30, 50


def entries(first: int) -> list[Instance]:
    return [Instance("accesslog.instance.istio-system", "logentry",
                     {"severity": "Info", "variables": {"n": n, "pad": "x" * 1000}})
            for n in range(first, first + PER_BATCH)]


def dropped(the_env: object, reason: str) -> float:
    return the_env.metrics.dropped_instances.labels("h.handler.ns", reason)._value.get()  # type: ignore[attr-defined]


async def test_a_stdout_nobody_reads_does_not_block_and_overflow_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    read_end, write_end = os.pipe()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(os.fdopen(write_end, "wb")))
    the_env = env()
    adapter = StdioAdapter()
    handler = StdioHandler(adapter.parse_params({}), the_env, {}, buffer_bytes=256 * 1024)
    await handler.start()
    # ~1.5 MB offered while nothing reads the pipe (it holds 64 KiB): had a write blocked, the
    # offering would never finish and the test would time out
    for batch in range(BATCHES):
        handler.handle_logentry(entries(batch * PER_BATCH))
    full = dropped(the_env, "buffer_full")
    assert full > 0
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(_read_all(read_end)))
    reader.start()
    await handler.close()
    sys.stdout.close()  # the write end: the reader sees end of file
    reader.join(30)
    numbers = [orjson.loads(line)["n"] for line in bytes(received).splitlines()]
    assert len(numbers) + full == BATCHES * PER_BATCH
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)  # in order, none twice
    assert numbers[:PER_BATCH] == list(range(PER_BATCH))  # the first batches were kept, later ones dropped
    assert dropped(the_env, "write_error") == dropped(the_env, "shutdown") == 0


def _read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as pipe:
        return pipe.read()


def test_a_failing_write_is_counted_and_the_writer_goes_on() -> None:
    counted: list[tuple[int, str]] = []
    written: list[bytes] = []

    def write(lines: object) -> None:
        batch = list(lines)  # type: ignore[call-overload]
        if b"bad\n" in batch:
            raise OSError("disk full")
        written.extend(batch)

    writer = BackgroundWriter(write, 1 << 20, lambda n, reason, exc: counted.append((n, reason)))
    assert writer.offer([b"bad\n", b"x\n"])
    writer.close(5)  # waits for the first batch: the two lines are counted
    assert counted == [(2, "write_error")]
    assert not writer.offer([b"late\n"])  # closed: refused, the caller counts it


def test_close_gives_up_on_a_stuck_stream_and_counts_what_waits() -> None:
    release = threading.Event()
    counted: list[tuple[int, str]] = []

    def stuck(lines: object) -> None:
        release.wait(30)

    writer = BackgroundWriter(stuck, 1 << 20, lambda n, reason, exc: counted.append((n, reason)))
    assert writer.offer([b"a\n"])  # taken by the thread, which then blocks
    while not _taken(writer):
        time.sleep(0.001)
    assert writer.offer([b"b\n", b"c\n"])
    writer.close(0.2)
    assert counted == [(2, "shutdown")]  # the batch being written is the thread's, not counted twice
    release.set()


def _taken(writer: BackgroundWriter) -> bool:
    return writer._in_flight > 0  # noqa: SLF001 - the test waits for the thread to take the batch
