"""The runtime: owns the current snapshot, swaps in new config atomically, and dispatches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from mixer.attributes import AttributeManifest, Bag
from mixer.config import CompiledConfig, load_config
from mixer.registry import AdapterRegistry
from mixer.hotmetrics import CounterSeries
from mixer.runtime._cache import DEFAULT_CACHE_SIZE, Lookup, remaining_verdict
from mixer.runtime._dispatch import (
    CachedCheckResponse,
    CheckResponse,
    ErrorLog,
    QuotaVerdict,
    check,
    combine,
    report,
)
from mixer.runtime._loops import on_loop
from mixer.runtime._reach import Denial, ListenerPolicy, StaticFacts, listener_policy
from mixer.runtime._snapshot import HandlerSlot, Snapshot, build_snapshot
from mixer.sdk import QuotaArgs
from mixer.selfmetrics import SelfMetrics

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "CheckResponse",
    "Denial",
    "ListenerPolicy",
    "QuotaVerdict",
    "Runtime",
    "Snapshot",
    "StaticFacts",
    "combine",
    "listener_policy",
    "on_loop",
]

_DRAIN_TIMEOUT = 10.0
_NOT_CACHED: Lookup = (None, None, 0.0, 0)  # what a snapshot without a check cache looks up
# The one report batching knob: a report is dispatched in slices of at most this many bags (each
# handler is called once per slice), and the front doors yield to the event loop between slices.
# It bounds the instances held at once and how long a report holds up its loop (~2 ms at 128).
REPORT_BATCH_SIZE = 128


class Runtime:
    """Front doors call ``report`` and ``check``; ``apply`` swaps config without a gap."""

    def __init__(
        self,
        metrics: SelfMetrics | None = None,
        registry: AdapterRegistry | None = None,
        batch_size: int = REPORT_BATCH_SIZE,
        check_cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if check_cache_size < 0:
            raise ValueError(f"check_cache_size must not be negative, got {check_cache_size}")
        self.check_cache_size = check_cache_size  # verdicts kept per snapshot; 0: no check cache
        self.metrics = metrics or SelfMetrics()
        self.registry = registry or AdapterRegistry()
        self.batch_size = batch_size
        self.logger = logging.getLogger("mixer.runtime")
        self.errors = ErrorLog(self.metrics, self.logger)
        self._snapshot: Snapshot | None = None
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()  # referenced until done (the loop keeps weak refs)
        self._on_swap: list[tuple[Callable[[Snapshot], None], asyncio.AbstractEventLoop | None]] = []
        # Where checks run and check and quota handlers start and close (``mixer serve``: a thread of
        # its own, so report dispatch cannot starve checks); None: the caller's loop.
        self.check_loop: asyncio.AbstractEventLoop | None = None
        # The ``mixer_checks`` series by (front door, allowed), each made by the first check it counts.
        self._checks_counted: dict[tuple[str, bool], CounterSeries] = {}

    @classmethod
    async def load(
        cls,
        paths: Iterable[str | Path],
        metrics: SelfMetrics | None = None,
        registry: AdapterRegistry | None = None,
    ) -> Runtime:
        runtime = cls(metrics, registry)
        await runtime.reload(paths)
        return runtime

    @property
    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            raise RuntimeError("runtime has no config yet")
        return self._snapshot

    @property
    def manifest(self) -> AttributeManifest:
        return self.snapshot.config.manifest

    @property
    def ready(self) -> bool:
        return self._snapshot is not None

    async def reload(self, paths: Iterable[str | Path]) -> None:
        """Load config from ``paths`` and apply it; on any error the current snapshot stays.

        Parsing and compiling run in a thread: a large config must not stall checks on the loop.
        """
        try:
            config = await asyncio.to_thread(load_config, list(paths), self.registry)
        except Exception:
            self.metrics.config_loads.labels("error").inc()
            raise
        await self.apply(config)

    async def apply(self, config: CompiledConfig) -> None:
        """Build a snapshot off the hot path, start its new handlers, swap, then retire old ones."""
        async with self._lock:
            old = self._snapshot
            try:
                snapshot = build_snapshot(config, self.metrics, old.slots if old else None, self.check_cache_size)
            except Exception:
                self.metrics.config_loads.labels("error").inc()
                raise
            fresh = [slot for slot in snapshot.slots.values() if not slot.started]
            try:
                for slot in fresh:
                    await on_loop(self._owner(slot), slot.handler.start())
                    slot.started = True
            except Exception:
                await self._close_slots(fresh)
                self.metrics.config_loads.labels("error").inc()
                raise
            self._snapshot = snapshot
            self.metrics.config_loads.labels("ok").inc()
            for callback, loop in list(self._on_swap):
                if loop is not None and loop is not asyncio.get_running_loop():
                    loop.call_soon_threadsafe(self._notify, callback, snapshot)
                else:
                    self._notify(callback, snapshot)
            if old is not None:
                retired = [s for name, s in old.slots.items() if snapshot.slots.get(name) is not s]
                task = asyncio.get_running_loop().create_task(self._retire(old, retired))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]:
        """Call ``callback(snapshot)`` after each swap (e.g. to push served policy), on the loop that
        subscribed; returns the function that unsubscribes it."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        entry = (callback, loop)
        self._on_swap.append(entry)
        return lambda: self._on_swap.remove(entry) if entry in self._on_swap else None

    def _notify(self, callback: Callable[[Snapshot], None], snapshot: Snapshot) -> None:
        try:
            callback(snapshot)
        except Exception:  # a subscriber's bug must not undo a swap that happened
            self.logger.exception("a config swap subscriber failed")

    def _owner(self, slot: HandlerSlot) -> asyncio.AbstractEventLoop | None:
        """The loop a handler's coroutines run on: the check loop's for check and quota handlers."""
        return self.check_loop if slot.serves_checks else None

    async def _retire(self, old: Snapshot, retired: Sequence[HandlerSlot]) -> None:
        # Polled: the count moves on the check loop, which may be another thread's.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _DRAIN_TIMEOUT
        while old.inflight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if old.inflight:
            self.logger.warning("closing %d handlers with %d checks still in flight", len(retired), old.inflight)
        await self._close_slots(retired)

    async def _close_slots(self, slots: Sequence[HandlerSlot]) -> None:
        for slot in slots:
            try:
                await on_loop(self._owner(slot), slot.handler.close())
            except Exception:
                self.logger.exception("closing handler %s failed", slot.name)
            slot.started = False

    def report(self, bags: Sequence[Bag], front_door: str = "native") -> int:
        """Dispatch a batch of bags to report handlers; returns how many instances were dispatched."""
        self.metrics.reports.labels(front_door).inc(len(bags))
        snapshot = self.snapshot
        step = self.batch_size
        if len(bags) <= step:
            return report(snapshot, bags, self.metrics, self.errors)
        return sum(
            report(snapshot, bags[start : start + step], self.metrics, self.errors)
            for start in range(0, len(bags), step)
        )

    async def submit(self, bags: Sequence[Bag], front_door: str = "native") -> int:
        """The front doors' way in (``RuntimeLike.submit``): dispatch here."""
        return self.report(bags, front_door)

    async def check(
        self, bag: Bag, quotas: Mapping[str, QuotaArgs] | None = None, front_door: str = "native"
    ) -> CheckResponse:
        """Answer a check on the check loop (the one owner of the check cache and the quota
        handlers' state), whichever loop asks."""
        loop = self.check_loop
        if loop is not None and loop is not asyncio.get_running_loop():
            return await on_loop(loop, self.check(bag, quotas, front_door))
        snapshot = self._snapshot or self.snapshot  # (the property only to raise its error: a hit is cheap)
        cache = snapshot.check_cache
        key, cached, seconds, uses = cache.lookup(bag) if cache is not None else _NOT_CACHED
        if cached is not None and not quotas:
            # A hit with no quota to allocate calls no handler and awaits nothing: answered here,
            # without the dispatch coroutine or the in-flight count (which only holds handlers open).
            response: CheckResponse = CachedCheckResponse(cached, seconds, uses)
            ok = cached.ok
        else:
            combined = remaining_verdict(cached, seconds, uses) if cached is not None else None
            snapshot.inflight += 1
            try:
                response = await check(snapshot, bag, quotas or {}, self.errors, key, combined)
            finally:
                snapshot.inflight -= 1
            ok = response.result.ok
        (self._checks_counted.get((front_door, ok)) or self._checks_series(front_door, ok)).inc()
        return response

    def _checks_series(self, front_door: str, ok: bool) -> CounterSeries:
        series = self.metrics.checks.labels(front_door, "ok" if ok else "denied")
        self._checks_counted[front_door, ok] = series
        return series

    async def close(self) -> None:
        """Close every handler (retiring ones first); safe to call twice."""
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        async with self._lock:
            if self._snapshot is not None:
                await self._close_slots(list(self._snapshot.slots.values()))
                self._snapshot = None
