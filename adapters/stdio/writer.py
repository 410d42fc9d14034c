"""Writes off the event loop: lines wait in a buffer bounded in bytes and a thread writes them out.

A write to stdout blocks while whatever reads it (a terminal, a pipe to a log shipper) is slow or
stopped; on the event loop that would stall every check and report of the process. Here the loop only
appends to the buffer (``offer``); when the buffer is full the lines are refused and the caller
counts them dropped. A write that fails is counted as well (``on_drop``), so offered lines are either
written or counted.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Sequence

WRITE_ERROR = "write_error"
BUFFER_FULL = "buffer_full"
SHUTDOWN = "shutdown"


class BackgroundWriter:
    """Hands batches of lines to ``write`` (any blocking call) on a thread of its own."""

    def __init__(self, write: Callable[[Sequence[bytes]], None], max_bytes: int,
                 on_drop: Callable[[int, str, Exception | None], None], name: str = "stdio-writer") -> None:
        self._write = write
        self._max_bytes = max_bytes
        self._on_drop = on_drop
        self._pending: collections.deque[list[bytes]] = collections.deque()
        self._pending_bytes = 0
        self._in_flight = 0  # batches at the head of _pending being written now
        self._closing = False
        self._wakeup = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def offer(self, lines: list[bytes]) -> bool:
        """Queue ``lines`` to be written, or refuse all of them (False) when they do not fit."""
        size = sum(map(len, lines))
        with self._wakeup:
            if self._closing or self._pending_bytes + size > self._max_bytes:
                return False
            self._pending.append(lines)
            self._pending_bytes += size
            self._wakeup.notify()
        return True

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def close(self, timeout: float) -> None:
        """Write what is queued, waiting at most ``timeout`` s; lines still queued then are counted
        dropped (a reader that never reads must not hold up shutdown). Safe twice."""
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        self._thread.join(timeout)
        with self._wakeup:  # the batches the thread has taken are its to write or count
            untaken = [self._pending.pop() for _ in range(len(self._pending) - self._in_flight)]
            self._pending_bytes -= sum(len(line) for batch in untaken for line in batch)
        left = sum(map(len, untaken))
        if left:
            self._on_drop(left, SHUTDOWN, None)

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._pending and not self._closing:
                    self._wakeup.wait()
                if not self._pending:
                    return  # closing, and everything is written
                batches = list(self._pending)
                self._in_flight = len(batches)
            lines = [line for batch in batches for line in batch]
            try:
                self._write(lines)
            except Exception as exc:  # noqa: BLE001 - any failure of the stream is counted, not fatal
                self._on_drop(len(lines), WRITE_ERROR, exc)
            with self._wakeup:  # only now leave the buffer: what is being written still counts
                for _ in batches:
                    self._pending_bytes -= sum(map(len, self._pending.popleft()))
                self._in_flight = 0
