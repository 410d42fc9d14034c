"""Delivery for push adapters: a bounded queue, batching, concurrent senders, retry with backoff.

Modelled on the OpenTelemetry Collector's exporterhelper: an adapter that sends to a remote backend
implements only "send this batch"; this module queues, batches, retries, drains on close and counts
every item it gives up on (``Env.count_dropped``), so ``sent + dropped == offered`` always holds.

    class PostHandler(PushHandler[dict[str, Any]]):
        async def send(self, batch: list[dict[str, Any]]) -> None:
            async with self.session.post(self.url, json=batch) as reply:
                if reply.status == 400:
                    raise PermanentError("backend refused the batch")
                reply.raise_for_status()  # anything else that raises is retried

        def handle_logentry(self, instances: Sequence[Instance]) -> None:
            self.queue.offer([dict(i.fields) for i in instances])  # never blocks

    settings, problems = parse_delivery(raw_params.get("delivery"))  # in the adapter's parse_params
    handler = PostHandler(settings, env)  # build(); the runtime calls start() and close()
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mixer.attributes import parse_duration
from mixer.sdk import Env, Handler, unknown_fields

__all__ = [
    "DROP_REASONS",
    "Backoff",
    "DeliverySettings",
    "PermanentError",
    "PushHandler",
    "PushQueue",
    "RetryableError",
    "parse_delivery",
]

T = TypeVar("T")

MIB = 1024 * 1024
QUEUE_FULL = "queue_full"
RETRIES_EXHAUSTED = "retries_exhausted"
PERMANENT_ERROR = "permanent_error"
SHUTDOWN = "shutdown"
DROP_REASONS = (QUEUE_FULL, RETRIES_EXHAUSTED, PERMANENT_ERROR, SHUTDOWN)


@dataclass(frozen=True)
class DeliverySettings:
    """How a push handler delivers. The defaults live here and nowhere else (durations in seconds).

    ``queue_bytes`` bounds the sum of ``size_of(item)`` over queued items; without an estimator each
    item counts as 1 byte, so only ``queue_size`` binds. Batches being sent (at most
    ``senders * batch_size`` items) are no longer in the queue.
    """

    queue_size: int = 10_000
    queue_bytes: int = 64 * MIB
    batch_size: int = 512
    batch_timeout: float = 1.0
    senders: int = 2
    timeout: float = 5.0  # one send attempt; a timed-out attempt is retried
    retry_enabled: bool = True
    retry_initial_interval: float = 0.5
    retry_max_interval: float = 30.0
    retry_multiplier: float = 1.5
    retry_jitter: float = 0.5  # each delay is drawn from interval * [1 - jitter, 1 + jitter]
    retry_max_elapsed: float = 300.0  # 0: retry until shutdown
    shutdown_timeout: float = 5.0


class PermanentError(Exception):
    """The backend refused the batch for good: not retried.

    ``rejected``: only that many items of the batch were lost, the rest were delivered (a partial
    success, as OTLP reports it); None means the whole batch.
    """

    def __init__(self, message: str = "", rejected: int | None = None) -> None:
        super().__init__(message)
        self.rejected = rejected


class RetryableError(Exception):
    """The batch may succeed later. ``retry_after`` (seconds, from the backend) floors the next delay.

    Any other exception a sender raises is treated as retryable too.
    """

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Backoff:
    """Exponential backoff with jitter, as the Collector's (cenkalti/backoff): the un-jittered interval
    grows by ``multiplier`` up to ``max_interval``; each delay is that interval jittered by +-jitter."""

    def __init__(self, settings: DeliverySettings, rng: random.Random) -> None:
        self._settings = settings
        self._rng = rng
        self._interval = settings.retry_initial_interval

    def next_delay(self, retry_after: float | None = None) -> float:
        s = self._settings
        spread = self._interval * s.retry_jitter
        delay = self._interval - spread + self._rng.random() * 2 * spread
        self._interval = min(self._interval * s.retry_multiplier, s.retry_max_interval)
        return max(delay, retry_after) if retry_after is not None else delay


class PushQueue(Generic[T]):
    """A bounded queue drained in batches by ``settings.senders`` tasks that call ``send``.

    ``offer`` is synchronous and cheap (the report path calls it once per batch): it appends one list
    and wakes the senders at most once. Exact counts live on the object: ``offered``, ``sent`` and
    ``dropped`` (by reason); ``offered == sent + sum(dropped.values()) + queued + in_flight``.
    """

    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[None]],
        settings: DeliverySettings,
        env: Env,
        size_of: Callable[[T], int] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if min(settings.queue_size, settings.queue_bytes, settings.batch_size, settings.senders) < 1:
            raise ValueError(f"queue_size, queue_bytes, batch_size and senders must be >= 1: {settings}")
        self._send = send
        self.settings = settings
        self._env = env
        self._size_of = size_of
        self._rng = rng or random.Random()
        # Offers are kept whole (one list per offer) so offer and take cost per batch, not per item.
        self._chunks: collections.deque[list[T]] = collections.deque()
        self._chunk_sizes: collections.deque[list[int]] = collections.deque()  # only with size_of
        self._head = 0  # items of _chunks[0] already taken
        self._count = 0
        self._bytes = 0
        self._oldest_at = 0.0  # loop time the queue last went from empty to non-empty
        self._data = asyncio.Event()  # set by offer when senders have work
        self._idle = asyncio.Event()  # set by senders when nothing is queued or in flight
        self._senders: list[asyncio.Task[None]] = []
        self._started = False
        self._closing = False
        self._closed = False
        self._flushers = 0
        self._depth = env.metrics.queue_depth.labels(env.handler_name)
        self._sent_metric = env.metrics.sent_instances.labels(env.handler_name)
        self.offered = 0
        self.sent = 0
        self.in_flight = 0
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)

    @property
    def queued(self) -> int:
        return self._count

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def offer(self, items: Sequence[T]) -> int:
        """Queue what fits, count the rest as dropped (``queue_full``); returns how many were accepted."""
        count = len(items)
        if not count:
            return 0
        self.offered += count
        if self._closing:
            self._drop(count, SHUTDOWN)
            return 0
        was_empty = not self._count
        room = self.settings.queue_size - self._count
        if self._size_of is None:
            room = min(room, self.settings.queue_bytes - self._bytes)
            accepted = count if count <= room else max(room, 0)
            if accepted:
                self._chunks.append(list(items) if accepted == count else list(items[:accepted]))
                self._bytes += accepted
        else:
            accepted = self._accept_sized(items, max(room, 0))
        self._count += accepted
        if accepted < count:
            self._drop(count - accepted, QUEUE_FULL)
        if accepted:
            if was_empty:
                self._oldest_at = asyncio.get_running_loop().time() if self._started else 0.0
            self._depth.set(self._count)
            if (was_empty or self._count >= self.settings.batch_size) and not self._data.is_set():
                self._data.set()
        return accepted

    def room(self) -> int:
        """How many more items ``offer`` would take now (at most; with ``size_of`` the byte budget may
        take fewer). A handler whose items are costly to build builds only this many and ``refuse``s
        the rest: while the backend is down and the queue full, nothing is built to be dropped."""
        if self._closing:
            return 0
        room = self.settings.queue_size - self._count
        if self._bytes >= self.settings.queue_bytes:
            return 0
        return max(room, 0)

    def refuse(self, count: int) -> None:
        """Count ``count`` items the handler did not build because there was no ``room``: offered and
        dropped (``queue_full``, or ``shutdown`` once closing), as ``offer`` would have counted them."""
        if count > 0:
            self.offered += count
            self._drop(count, SHUTDOWN if self._closing else QUEUE_FULL)

    def _accept_sized(self, items: Sequence[T], room: int) -> int:
        budget = self.settings.queue_bytes - self._bytes
        size_of = self._size_of
        assert size_of is not None
        sizes: list[int] = []
        for item in items[:room]:
            size = size_of(item)
            if size > budget:
                break  # keep arrival order: the rest of this offer is dropped
            budget -= size
            sizes.append(size)
        if sizes:
            self._chunks.append(list(items[: len(sizes)]))
            self._chunk_sizes.append(sizes)
        self._bytes = self.settings.queue_bytes - budget
        return len(sizes)

    async def start(self) -> None:
        if self._started or self._closing:
            return
        self._started = True
        self._oldest_at = asyncio.get_running_loop().time()
        self._senders = [
            asyncio.create_task(self._sender(), name=f"push-sender-{self._env.handler_name}-{i}")
            for i in range(self.settings.senders)
        ]

    async def flush(self) -> None:
        """Send everything queued now (partial batches too) and wait until it is delivered or dropped."""
        if not self._started:
            raise RuntimeError("PushQueue.flush() needs start() first")
        self._flushers += 1
        try:
            self._data.set()
            while (self._count or self.in_flight) and not self._closed:
                self._idle.clear()
                await self._idle.wait()
        finally:
            self._flushers -= 1

    async def close(self) -> None:
        """Drain within ``shutdown_timeout``; what is left is counted as ``shutdown``. Safe twice and
        without start (a never-started queue sends nothing: what it holds is counted as ``shutdown``)."""
        if self._closing:
            return
        self._closing = True
        self._data.set()
        if self._senders:
            _, pending = await asyncio.wait(self._senders, timeout=self.settings.shutdown_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)  # each counts its own batch as shutdown when cancelled
        self._closed = True
        left = self._count
        self._chunks.clear()
        self._chunk_sizes.clear()
        self._head = self._count = 0
        self._bytes = 0
        self._depth.set(0)
        if left:
            self._drop(left, SHUTDOWN)
        self._idle.set()

    def _drop(self, count: int, reason: str) -> None:
        if count > 0:
            self.dropped[reason] += count
            self._env.count_dropped(count, reason)

    def _take(self) -> list[T]:
        size = min(self.settings.batch_size, self._count)
        sized = self._size_of is not None
        batch: list[T] = []
        while len(batch) < size:
            chunk, head = self._chunks[0], self._head
            end = head + size - len(batch)
            if end >= len(chunk):  # the rest of this chunk fits
                batch.extend(chunk[head:] if head else chunk)
                if sized:
                    self._bytes -= sum(self._chunk_sizes.popleft()[head:])
                self._chunks.popleft()
                self._head = 0
            else:
                batch.extend(chunk[head:end])
                if sized:
                    self._bytes -= sum(self._chunk_sizes[0][head:end])
                self._head = end
        if not sized:
            self._bytes -= size
        self._count -= size
        self.in_flight += size
        self._depth.set(self._count)
        # _oldest_at stays: what is left arrived after it, so no item waits longer than batch_timeout
        return batch

    async def _next_batch(self) -> list[T] | None:
        loop = asyncio.get_running_loop()
        while True:
            if self._count >= self.settings.batch_size or (self._count and (self._closing or self._flushers)):
                return self._take()
            if not self._count:
                if self._closing:
                    return None
                self._data.clear()
                await self._data.wait()
                continue
            remaining = self._oldest_at + self.settings.batch_timeout - loop.time()
            if remaining <= 0:
                return self._take()
            self._data.clear()
            try:
                async with asyncio.timeout(remaining):  # no extra task, unlike wait_for on 3.11
                    await self._data.wait()
            except TimeoutError:
                pass

    async def _sender(self) -> None:
        while (batch := await self._next_batch()) is not None:
            try:
                await self._deliver(batch)
            except asyncio.CancelledError:
                self._drop(len(batch), SHUTDOWN)
                raise
            finally:
                self.in_flight -= len(batch)
                if not self._count and not self.in_flight:
                    self._idle.set()

    async def _deliver(self, batch: list[T]) -> None:
        """Send with retries; account for the batch exactly once, with no await after accounting."""
        settings = self.settings
        loop = asyncio.get_running_loop()
        started = loop.time()
        backoff = Backoff(settings, self._rng)
        log = self._env.logger
        while True:
            try:
                async with asyncio.timeout(settings.timeout):
                    await self._send(batch)
            except PermanentError as exc:
                lost = len(batch) if exc.rejected is None else min(max(exc.rejected, 0), len(batch))
                self._delivered(len(batch) - lost)
                self._drop(lost, PERMANENT_ERROR)
                log.warning("%s: backend refused %d of %d items: %s", self._env.handler_name, lost, len(batch), exc)
                return
            except Exception as exc:  # anything else may succeed later
                retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
                delay = backoff.next_delay(retry_after)
                elapsed = loop.time() - started
                limit = settings.retry_max_elapsed
                if not settings.retry_enabled or (limit > 0 and elapsed + delay > limit):
                    self._drop(len(batch), RETRIES_EXHAUSTED)
                    log.warning(
                        "%s: gave up on %d items after %.1fs: %s",
                        self._env.handler_name, len(batch), elapsed, _describe(exc),
                    )
                    return
                log.debug("%s: send failed (%s), retrying in %.3fs", self._env.handler_name, _describe(exc), delay)
                await asyncio.sleep(delay)
            else:
                self._delivered(len(batch))
                return

    def _delivered(self, count: int) -> None:
        if count > 0:
            self.sent += count
            self._sent_metric.inc(count)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class PushHandler(Handler, Generic[T]):
    """A handler that delivers through a PushQueue: subclasses implement ``send`` and make their
    ``handle_<template>`` convert instances and call ``self.queue.offer``. Subclasses that open a
    client in ``start`` (or close one in ``close``) call ``super()`` too."""

    def __init__(self, settings: DeliverySettings, env: Env, size_of: Callable[[T], int] | None = None) -> None:
        self.env = env
        self.queue: PushQueue[T] = PushQueue(self.send, settings, env, size_of)

    async def send(self, batch: list[T]) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        await self.queue.start()

    async def close(self) -> None:
        await self.queue.close()

    def report_room(self, template: str) -> int | None:
        return self.queue.room()

    def refuse_reports(self, template: str, count: int) -> None:
        self.queue.refuse(count)


# --- the shared ``delivery:`` params block ------------------------------------------------------

_TOP_KEYS = ("queueSize", "queueBytes", "batchSize", "batchTimeout", "senders", "timeout", "retry", "shutdownTimeout")
_RETRY_KEYS = ("enabled", "initialInterval", "maxInterval", "multiplier", "jitter", "maxElapsedTime")


def parse_delivery(raw: Any, path: str = "delivery") -> tuple[DeliverySettings, list[tuple[str, str]]]:
    """Settings from a ``delivery:`` params block (camelCase, durations like ``1s``) and every problem
    with its path; an adapter's ``parse_params`` extends its own problems with them."""
    defaults = DeliverySettings()
    if raw is None:
        return defaults, []
    if not isinstance(raw, Mapping):
        return defaults, [(path, "must be a mapping")]
    reader = _Reader(raw, path)
    reader.problems += unknown_fields(raw, _TOP_KEYS, path)
    values: dict[str, Any] = {
        "queue_size": reader.integer("queueSize", defaults.queue_size, minimum=1),
        "queue_bytes": reader.integer("queueBytes", defaults.queue_bytes, minimum=1),
        "batch_size": reader.integer("batchSize", defaults.batch_size, minimum=1),
        "batch_timeout": reader.duration("batchTimeout", defaults.batch_timeout, allow_zero=True),
        "senders": reader.integer("senders", defaults.senders, minimum=1),
        "timeout": reader.duration("timeout", defaults.timeout),
        "shutdown_timeout": reader.duration("shutdownTimeout", defaults.shutdown_timeout, allow_zero=True),
    }
    retry_raw = raw.get("retry")
    if retry_raw is not None and not isinstance(retry_raw, Mapping):
        reader.problems.append((f"{path}.retry", "must be a mapping"))
    elif retry_raw is not None:
        retry = _Reader(retry_raw, f"{path}.retry", reader.problems)
        reader.problems += unknown_fields(retry_raw, _RETRY_KEYS, f"{path}.retry")
        values["retry_enabled"] = retry.boolean("enabled", defaults.retry_enabled)
        values["retry_initial_interval"] = retry.duration("initialInterval", defaults.retry_initial_interval)
        values["retry_max_interval"] = retry.duration("maxInterval", defaults.retry_max_interval)
        values["retry_multiplier"] = retry.number("multiplier", defaults.retry_multiplier, 1.0, None)
        values["retry_jitter"] = retry.number("jitter", defaults.retry_jitter, 0.0, 1.0)
        values["retry_max_elapsed"] = retry.duration("maxElapsedTime", defaults.retry_max_elapsed, allow_zero=True)
    settings = dataclasses.replace(defaults, **values)
    if "batchSize" in raw and "queueSize" in raw and settings.batch_size > settings.queue_size:
        reader.problems.append((f"{path}.batchSize", f"must not exceed queueSize ({settings.queue_size})"))
    if settings.retry_max_interval < settings.retry_initial_interval:
        reader.problems.append(
            (f"{path}.retry.maxInterval", f"must not be shorter than initialInterval ({settings.retry_initial_interval}s)")
        )
    return settings, reader.problems


class _Reader:
    """Typed reads of one mapping's keys, each problem recorded with its path (the default kept)."""

    def __init__(self, raw: Mapping[str, Any], path: str, problems: list[tuple[str, str]] | None = None) -> None:
        self.raw = raw
        self.path = path
        self.problems = problems if problems is not None else []

    def _bad(self, key: str, message: str) -> None:
        self.problems.append((f"{self.path}.{key}", message))

    def integer(self, key: str, default: int, minimum: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self._bad(key, f"must be an integer >= {minimum}, got {value!r}")
            return default
        return int(value)

    def number(self, key: str, default: float, low: float, high: float | None) -> float:
        value = self.raw.get(key, default)
        span = f">= {low}" if high is None else f"between {low} and {high}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (high is not None and value > high):
            self._bad(key, f"must be a number {span}, got {value!r}")
            return default
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            self._bad(key, f"must be true or false, got {value!r}")
            return default
        return value

    def duration(self, key: str, default: float, allow_zero: bool = False) -> float:
        if key not in self.raw:
            return default
        value = self.raw[key]
        if not isinstance(value, str):
            self._bad(key, f"must be a duration such as '1s' or '250ms', got {value!r}")
            return default
        try:
            seconds = parse_duration(value).total_seconds()
        except ValueError as exc:
            self._bad(key, str(exc))
            return default
        if seconds < 0 or (seconds == 0 and not allow_zero):
            self._bad(key, "must be > 0" if not allow_zero else "must not be negative")
            return default
        return seconds

