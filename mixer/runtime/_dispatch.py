"""Run bags through a snapshot: report batches, checks and quota allocations."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import time
from time import perf_counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mixer.attributes import Bag
from mixer.expr import EvaluationError
from mixer.runtime._cache import Key, remaining_verdict
from mixer.runtime._plan import RulePlan
from mixer.runtime._snapshot import CheckSink, QuotaSink, ReportSink, Sink, Snapshot
from mixer.sdk import (
    DEADLINE_EXCEEDED,
    DEFAULT_VALID_DURATION,
    INTERNAL,
    OK,
    RESOURCE_EXHAUSTED,
    CheckResult,
    QuotaArgs,
    QuotaResult,
)
from mixer.selfmetrics import SelfMetrics

_FAILED = object()  # marks a value whose expression failed for this bag
# What a map lookup reads when the map is absent: an empty dict, only ever read (``dict.get``).
_NO_MAPS: Iterator[dict[str, str]] = itertools.repeat({})
# A check without quotas: no grants, none asked (shared, read-only).
_NO_QUOTAS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class QuotaVerdict:
    """What one check's quota allocations add up to, for every front door alike.

    ``exhausted`` names the first quota (in the order asked) granted less than asked; ``remaining``
    is the least remaining over the handlers that know it; ``limited`` is an allocation that told its
    limit and window (the rate limit service's ``current_limit``); ``reset`` is the shortest
    non-zero valid duration (when the window resets).
    """

    exhausted: str | None = None
    remaining: int | None = None
    limited: QuotaResult | None = None
    reset: dt.timedelta | None = None


@dataclass(slots=True)
class CheckResponse:
    """The combined answer of the check handlers and every quota allocation asked for."""

    result: CheckResult
    quotas: Mapping[str, QuotaResult] = field(default_factory=dict)
    requested: Mapping[str, QuotaArgs] = field(default_factory=dict)

    def exhausted(self) -> str | None:
        """The first quota (in the order asked) granted less than asked, if any."""
        quotas = self.quotas
        for name, args in self.requested.items():
            granted = quotas.get(name)
            if granted is not None and granted.granted_amount < args.amount:
                return name
        return None

    def quota_verdict(self) -> QuotaVerdict:
        remaining: int | None = None
        limited: QuotaResult | None = None
        reset: dt.timedelta | None = None
        for name in self.requested:
            granted = self.quotas.get(name)
            if granted is None:
                continue
            if granted.remaining is not None:
                remaining = granted.remaining if remaining is None else min(remaining, granted.remaining)
            if granted.limit is not None and granted.window is not None:
                limited = granted
            if granted.valid_duration:
                reset = granted.valid_duration if reset is None else min(reset, granted.valid_duration)
        return QuotaVerdict(self.exhausted(), remaining, limited, reset)

    def verdict(self) -> CheckResult:
        """The answer for the request: a denial by a check handler first, then an exhausted quota
        (RESOURCE_EXHAUSTED, HTTP 429), else the combined allow. Its status, message and HTTP
        refinements are the answer's; how long and how often a proxy may reuse it is ``result``'s,
        not this one's (an exhausted quota's verdict has the default validity, a cache hit's the
        validity the cached verdict had when it was first answered)."""
        result = self.result
        if not result.ok or not self.requested:
            return result
        exhausted = self.exhausted()  # (not quota_verdict(): the remaining and reset are not read here)
        if exhausted is None:
            return result
        return CheckResult(
            status_code=RESOURCE_EXHAUSTED, message=f"quota {exhausted} exhausted", http_status=429
        )


class CachedCheckResponse(CheckResponse):
    """A check without quotas answered from the check cache: the cached verdict, valid for
    ``seconds`` and ``uses`` more. ``result``, the verdict with that validity (which only the native
    API reports), is built when read; ``verdict()`` is the cached verdict itself, at no cost."""

    __slots__ = ("_cached", "_seconds", "_uses")

    quotas = requested = _NO_QUOTAS  # (class attributes: nothing to set per hit)

    def __init__(self, cached: CheckResult, seconds: float, uses: int) -> None:
        self._cached = cached
        self._seconds = seconds
        self._uses = uses

    @property
    def result(self) -> CheckResult:  # type: ignore[override]  # the field, read-only: nothing sets a hit's
        return remaining_verdict(self._cached, self._seconds, self._uses)

    def verdict(self) -> CheckResult:
        return self._cached


class ErrorLog:
    """Counts evaluation errors and logs at most one line per key per interval."""

    def __init__(self, metrics: SelfMetrics, logger: logging.Logger, interval: float = 10.0) -> None:
        self.metrics = metrics
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def evaluation_failed(self, where: str, error: Exception) -> None:
        self.metrics.evaluation_errors.labels(where).inc()
        self.limited(where, "evaluation failed for %s: %s", where, error)

    def handler_failed(self, handler: str, template: str, error: Exception) -> None:
        """A handler call raised or timed out (counted by the caller): a backend that is down fails
        every call, so its traceback is logged at most once per interval."""
        self.limited(f"handler:{handler}", "handler %s failed (%s): %r", handler, template, error,
                     exc_info=error)

    def limited(self, key: str, message: str, *args: Any, exc_info: Exception | None = None) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) >= self.interval:
            suppressed = self._suppressed.pop(key, 0)
            extra = f" ({suppressed} more since last logged)" if suppressed else ""
            self.logger.warning(message + "%s", *args, extra, exc_info=exc_info)
            self._last[key] = now
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1


def build_instances(
    plans: Sequence[RulePlan], sinks: list[list[Any]], bags: Sequence[Bag], errors: ErrorLog
) -> None:
    """Append each instance every matching rule builds for each bag to its sink list."""
    # The unguarded closures run first; whatever they raise, the guarded ones are run again on the
    # slow path, which turns it into EvaluationError and counts it.
    for bag in bags:
        for plan in plans:
            match = plan.match_fast
            if match is not None:
                try:
                    if not match(bag):
                        continue
                except Exception:
                    if not _matches_slowly(plan, bag, errors):
                        continue
            values = list(map(bag.get, plan.lookup_names, plan.lookup_fallbacks))  # cannot fail
            if plan.map_names or plan.evaluators_fast:  # (most of Istio's instances are lookups only)
                try:
                    values += map(dict.get, map(bag.get, plan.map_names, _NO_MAPS), plan.map_keys, plan.map_fallbacks)
                    values += [evaluate(bag) for evaluate in plan.evaluators_fast]
                except Exception:
                    _build_partial(plan, sinks, bag, errors)
                    continue
            for output in plan.outputs:
                sinks[output.sink].append(output.make(values))


def _refuse_for_full_sinks(
    plans: Sequence[RulePlan], full: list[bool], report_sinks: Sequence[ReportSink], bags: Sequence[Bag],
    errors: ErrorLog,
) -> tuple[list[RulePlan], int]:
    """The plans still to build, and how many instances the others would have built. A rule whose every instance goes to a handler with no room (a push
    queue full while its backend is down) builds nothing: its ``match`` is evaluated and each handler
    told how many instances it did not get (``Handler.refuse_reports``), which counts them dropped."""
    building: list[RulePlan] = []
    refused = [0] * len(full)
    for plan in plans:
        if not all(full[output.sink] for output in plan.outputs):
            building.append(plan)
            continue
        matched = sum(1 for bag in bags if _matches(plan, bag, errors))
        for output in plan.outputs:
            refused[output.sink] += matched
    for sink, count in zip(report_sinks, refused):
        if count:
            sink.slot.handler.refuse_reports(sink.template, count)
    return building, sum(refused)


def _matches(plan: RulePlan, bag: Bag, errors: ErrorLog) -> bool:
    match = plan.match_fast
    if match is None:
        return True
    try:
        return bool(match(bag))
    except Exception:
        return _matches_slowly(plan, bag, errors)


def _matches_slowly(plan: RulePlan, bag: Bag, errors: ErrorLog) -> bool:
    assert plan.match is not None
    try:
        return bool(plan.match(bag))
    except EvaluationError as exc:
        errors.evaluation_failed(plan.rule, exc)
        return False


def _build_partial(plan: RulePlan, sinks: list[list[Any]], bag: Bag, errors: ErrorLog) -> None:
    """Slow path after a failure: build the instances whose expressions all succeeded."""
    values: list[Any] = list(map(bag.get, plan.lookup_names, plan.lookup_fallbacks))
    failures: dict[int, EvaluationError] = {}
    for index, evaluate in enumerate(plan.evaluators, len(values)):
        try:
            values.append(evaluate(bag))
        except EvaluationError as exc:
            values.append(_FAILED)
            failures[index] = exc
    for output in plan.outputs:
        failed = output.uses.intersection(failures)
        if failed:
            errors.evaluation_failed(output.instance, failures[min(failed)])
        else:
            sinks[output.sink].append(output.make(values))


class _accounted:  # noqa: N801 - used as a context manager, like contextlib's
    """Count one report handler call and its duration; count (and re-raise) a failure. (Check and
    quota calls, one or more per check, count inline: ``_call_check_handler``.)"""

    __slots__ = ("sink", "errors", "started")

    def __init__(self, sink: Sink, errors: ErrorLog) -> None:
        self.sink = sink
        self.errors = errors
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        failed = False
        if isinstance(exc, Exception):  # not a cancellation: that is no failure of the handler
            failed = True
            self.errors.handler_failed(self.sink.slot.name, self.sink.template, exc)
        self.sink.series.dispatched(time.perf_counter() - self.started, failed)


def report(snapshot: Snapshot, bags: Sequence[Bag], metrics: SelfMetrics, errors: ErrorLog) -> int:
    """Dispatch a batch; each handler is called once per template. Returns instances dispatched."""
    sinks: list[list[Any]] = [[] for _ in snapshot.report_sinks]
    plans = snapshot.report_plans
    full = [sink.slot.handler.report_room(sink.template) == 0 for sink in snapshot.report_sinks]
    dispatched = 0  # refused instances count too: a report's answer does not depend on a backend's health
    if True in full:
        plans, dispatched = _refuse_for_full_sinks(plans, full, snapshot.report_sinks, bags, errors)
    build_instances(plans, sinks, bags, errors)
    for sink, instances in zip(snapshot.report_sinks, sinks):
        if instances:
            _call_report_handler(sink, instances, metrics, errors)
            dispatched += len(instances)
    return dispatched


def _call_report_handler(sink: ReportSink, instances: list[Any], metrics: SelfMetrics, errors: ErrorLog) -> None:
    try:
        with _accounted(sink, errors):
            sink.call(instances)
    except Exception:
        metrics.dropped_instances.labels(sink.slot.name, "handler_error").inc(len(instances))


async def check(
    snapshot: Snapshot, bag: Bag, quotas: Mapping[str, QuotaArgs], errors: ErrorLog,
    key: Key | None = None, combined: CheckResult | None = None,
) -> CheckResponse:
    """Ask every matching check handler; combine: first denial wins, minimum duration and count.

    ``combined`` is the verdict the snapshot's check cache held for this bag (its ``lookup``), reused
    as is; without it the handlers are asked and their answer is cached under ``key`` (None: not
    cacheable). Quotas are always allocated.
    """
    if combined is None:
        sinks: list[list[Any]] = [[] for _ in snapshot.check_sinks]
        build_instances(snapshot.check_plans, sinks, [bag], errors)
        calls = [
            _call_check_handler(sink, instance, errors)
            for sink, instances in zip(snapshot.check_sinks, sinks)
            for instance in instances
        ]
        # One call (the common case) is awaited in place: gather would make it a task and cost the
        # check an extra turn of the event loop. Several run concurrently (remote policy backends).
        results = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls) if calls else []
        combined = combine(results)
        cache = snapshot.check_cache
        if cache is not None and key is not None:
            cache.put(key, combined)
    granted = await _allocate(snapshot, bag, quotas, errors) if quotas else _NO_QUOTAS
    return CheckResponse(combined, granted, quotas)


def combine(results: Sequence[CheckResult]) -> CheckResult:
    if not results:
        return CheckResult()
    denial = next((r for r in results if not r.ok), None)
    duration = min(r.valid_duration for r in results)
    count = min(r.valid_use_count for r in results)
    base = denial or next((r for r in results if r.headers), results[0])
    return CheckResult(
        status_code=base.status_code,
        message=base.message,
        valid_duration=duration,
        valid_use_count=count,
        http_status=base.http_status,
        headers=base.headers,
        body=base.body,
    )


async def _call_check_handler(sink: CheckSink, instance: Any, errors: ErrorLog) -> CheckResult:
    calls = sink.slot.calls
    started = perf_counter()
    try:
        if calls.timeout is None:
            result = await sink.call(instance)
        else:
            async with asyncio.timeout(calls.timeout.total_seconds()):
                result = await sink.call(instance)
    except Exception as exc:
        # A policy backend that fails must not silently allow unless its handler says failOpen.
        # Either way the answer is not to be reused: the next check asks the handler again.
        code, why = _failed(sink, exc, started, errors)
        return CheckResult(status_code=OK if calls.fail_open else code, message=why,
                           valid_duration=dt.timedelta(0), valid_use_count=0)
    except BaseException:  # cancelled: counted as a call, not as a failure of the handler
        sink.series.dispatched(perf_counter() - started, False)
        raise
    sink.series.dispatched(perf_counter() - started, False)
    return result


def _failed(sink: Sink, exc: Exception, started: float, errors: ErrorLog) -> tuple[int, str]:
    """Count and log a handler call that timed out or raised; its rpc code and message."""
    sink.series.dispatched(perf_counter() - started, True)
    errors.handler_failed(sink.slot.name, sink.template, exc)
    return _failure(sink, exc)


def _failure(sink: Sink, exc: Exception) -> tuple[int, str]:
    """The rpc code and message for a handler call that timed out or raised."""
    if isinstance(exc, TimeoutError):
        timeout = sink.slot.calls.timeout
        return DEADLINE_EXCEEDED, f"handler {sink.slot.name} timed out after {timeout.total_seconds() if timeout else 0:g}s"
    return INTERNAL, f"handler {sink.slot.name} failed: {exc}"


async def _allocate(
    snapshot: Snapshot, bag: Bag, quotas: Mapping[str, QuotaArgs], errors: ErrorLog
) -> dict[str, QuotaResult]:
    """Allocate each requested quota from the handlers of matching rules that build it.

    A quota is named by its instance (``requestcount``, ``requestcount.istio-system`` or the fully
    qualified ``requestcount.instance.istio-system``). A quota no rule builds is granted in full.
    """
    sinks: list[list[Any]] = [[] for _ in snapshot.quota_sinks]
    build_instances(snapshot.quota_plans, sinks, [bag], errors)
    aliases = snapshot.quota_aliases
    out: dict[str, QuotaResult] = {}
    for name, args in quotas.items():
        granted: QuotaResult | None = None
        for sink, instances in zip(snapshot.quota_sinks, sinks):
            for instance in instances:
                if name not in aliases[instance.name]:
                    continue
                result = await _call_quota_handler(sink, instance, args, errors)
                if granted is None or result.granted_amount < granted.granted_amount:
                    granted = result
        out[name] = granted or QuotaResult(args.amount, DEFAULT_VALID_DURATION)
    return out


async def _call_quota_handler(sink: QuotaSink, instance: Any, args: QuotaArgs, errors: ErrorLog) -> QuotaResult:
    calls = sink.slot.calls
    started = perf_counter()
    try:
        if calls.timeout is None:
            result = await sink.call(instance, args)
        else:
            async with asyncio.timeout(calls.timeout.total_seconds()):
                result = await sink.call(instance, args)
    except Exception as exc:
        code, why = _failed(sink, exc, started, errors)
        if calls.fail_open:
            return QuotaResult(args.amount, dt.timedelta(0), OK, why)
        return QuotaResult(0, dt.timedelta(0), code, why)
    except BaseException:  # cancelled: counted as a call, not as a failure of the handler
        sink.series.dispatched(perf_counter() - started, False)
        raise
    sink.series.dispatched(perf_counter() - started, False)
    return result
