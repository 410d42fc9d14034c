"""The memquota adapter (Mixer's params): fixed-window quotas kept in this process's memory.

Params: ``quotas: [{name, maxAmount, validDuration, overrides: [{dimensions, maxAmount, validDuration}]}]``.
``name`` is the quota instance (``requestcount``, ``requestcount.istio-system`` or fully qualified).
Each distinct set of dimension values has its own window of ``validDuration``; a window grants up to
``maxAmount`` (``best_effort`` grants what is left, otherwise all or nothing). Results carry
QuotaResult's ``remaining``, ``limit`` and ``window``, which the rate limit front door reports as
``limit_remaining`` and ``current_limit`` (Envoy's x-ratelimit-* headers). Replicas do not share
windows: use a shared quota backend for that.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mixer.attributes import parse_duration
from mixer.sdk import (
    OK,
    RESOURCE_EXHAUSTED,
    Adapter,
    Env,
    Handler,
    Instance,
    InstanceSchema,
    ParamsError,
    QuotaArgs,
    QuotaResult,
    quota_names,
    unknown_fields,
)

__all__ = ["MemQuotaAdapter", "MemQuotaHandler", "QuotaLimit", "Window", "WindowResolver", "grant", "duration_param",
           "parse_limits", "window_for"]

# Bound on distinct (quota, dimensions) windows kept; expired ones are swept first.
MAX_WINDOWS = 100_000



@dataclass(frozen=True)
class QuotaLimit:
    name: str
    max_amount: int
    valid_duration: dt.timedelta
    overrides: tuple[tuple[Mapping[str, str], int, dt.timedelta], ...] = ()


@dataclass(frozen=True)
class MemQuotaParams:
    quotas: tuple[QuotaLimit, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Window:
    """Which counter an allocation draws on and its limit: one per quota and distinct dimensions
    (the first matching override sets the limit). redisquota resolves through this too, so both
    adapters count the same way for the same config (Istio #15543 was that they did not)."""

    limit: QuotaLimit
    dimensions: tuple[tuple[str, str], ...]  # sorted (name, value) pairs
    max_amount: int
    duration: dt.timedelta
    seconds: float  # the duration's, for the clock arithmetic of every allocation
    key: tuple[str, tuple[tuple[str, str], ...]]  # (quota name, dimensions): its counter's, made once


def window_for(limits: Mapping[str, QuotaLimit], instance: Instance) -> Window | None:
    """The window ``instance`` allocates from, or None when no configured quota names it."""
    limit = next((limits[n] for n in quota_names(instance.name) if n in limits), None)
    if limit is None:
        return None
    dimensions = {str(k): str(v) for k, v in (instance.fields.get("dimensions") or {}).items()}
    max_amount, duration = limit.max_amount, limit.valid_duration
    for match, amount, override_duration in limit.overrides:
        if all(dimensions.get(k) == v for k, v in match.items()):
            max_amount, duration = amount, override_duration
            break
    pairs = tuple(sorted(dimensions.items()))
    return Window(limit, pairs, max_amount, duration, duration.total_seconds(), (limit.name, pairs))


class WindowResolver:
    """``window_for`` with its answers kept per instance and dimension values: a check allocates on
    every request, and the same few dimension sets recur. At most ``capacity`` answers are kept
    (all are dropped when full: recomputing one is cheap, an unbounded dict is not).

    A dimension's type is fixed by its expression, so equal values of different types (1 and True)
    never share a key.
    """

    def __init__(self, limits: Mapping[str, QuotaLimit], capacity: int = 10_000) -> None:
        self._limits = dict(limits)
        self._capacity = capacity
        self._known: dict[tuple[str, tuple[tuple[str, Any], ...]], Window | None] = {}

    def __call__(self, instance: Instance) -> Window | None:
        dimensions = instance.fields.get("dimensions") or {}
        key = (instance.name, tuple(dimensions.items()))
        try:
            return self._known[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable dimension value: work it out each time
            return window_for(self._limits, instance)
        if len(self._known) >= self._capacity:
            self._known.clear()
        window = self._known[key] = window_for(self._limits, instance)
        return window


def grant(asked: int, left: int, best_effort: bool) -> int:
    """How much of ``asked`` a window with ``left`` grants: best effort takes what is left,
    otherwise all or nothing."""
    if left < 0:  # a lowered maxAmount can leave a window over its new limit
        left = 0
    if best_effort:
        return min(asked, left)
    return asked if asked <= left else 0


class MemQuotaHandler(Handler):
    def __init__(self, params: MemQuotaParams, env: Env, clock: Callable[[], float] | None = None) -> None:
        self.env = env
        self._clock = clock or env.clock
        self._limits = {limit.name: limit for limit in params.quotas}
        self._resolve = WindowResolver(self._limits)
        self._windows: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}  # key -> [start, used]

    async def allocate_quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        window = self._resolve(instance)
        if window is None:
            return QuotaResult(args.amount)  # not configured here: unlimited
        now = self._clock()
        counter = self._windows.get(window.key)
        seconds = window.seconds
        if counter is None or now - counter[0] >= seconds:
            if counter is None and len(self._windows) >= MAX_WINDOWS:
                self._sweep(now)
            counter = [now, 0.0]
            self._windows[window.key] = counter
        left = window.max_amount - int(counter[1])
        granted = grant(args.amount, left, args.best_effort)
        counter[1] += granted
        until_reset = dt.timedelta(0, max(seconds - (now - counter[0]), 0.0))  # (days, seconds): positional is cheaper
        if granted or args.amount == 0:
            return QuotaResult(granted, until_reset, OK, "", max(left - granted, 0), window.max_amount, window.duration)
        return QuotaResult(granted, until_reset, RESOURCE_EXHAUSTED, f"quota {window.limit.name} exhausted",
                           max(left - granted, 0), window.max_amount, window.duration)

    def _sweep(self, now: float) -> None:
        expired = [key for key, (start, _) in self._windows.items() if now - start >= self._window_seconds(key[0])]
        for key in expired:
            del self._windows[key]
        if len(self._windows) >= MAX_WINDOWS:
            # Still full of live windows: forget the oldest rather than grow without bound.
            oldest = sorted(self._windows, key=lambda k: self._windows[k][0])[: len(self._windows) // 10 + 1]
            for key in oldest:
                del self._windows[key]
            self.env.count_dropped(len(oldest), "memquota_windows_full")

    def _window_seconds(self, name: str) -> float:
        return self._limits[name].valid_duration.total_seconds()


class MemQuotaAdapter(Adapter):
    name = "memquota"
    templates = frozenset({"quota"})

    def parse_params(self, raw: Mapping[str, Any]) -> MemQuotaParams:
        problems = unknown_fields(raw, ("quotas",))
        limits = [limit for limit, _ in parse_limits(raw.get("quotas", []), problems)]
        if problems:
            raise ParamsError(problems)
        return MemQuotaParams(tuple(limits))

    def build(self, params: Any, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        return MemQuotaHandler(params, env)


def parse_limits(
    raw_quotas: Any, problems: list[tuple[str, str]], extra_fields: tuple[str, ...] = ()
) -> list[tuple[QuotaLimit, Mapping[str, Any]]]:
    """``quotas: [{name, maxAmount, validDuration, overrides}]``, each with its raw mapping (for an
    adapter's ``extra_fields``); every problem is appended with its path."""
    out: list[tuple[QuotaLimit, Mapping[str, Any]]] = []
    if not isinstance(raw_quotas, list):
        problems.append(("quotas", "must be a list"))
        return out
    for i, item in enumerate(raw_quotas):
        where = f"quotas[{i}]"
        if not isinstance(item, dict):
            problems.append((where, "must be a mapping with name, maxAmount, validDuration"))
            continue
        problems += unknown_fields(item, ("name", "maxAmount", "validDuration", "overrides", *extra_fields), where)
        name = item.get("name")
        if not isinstance(name, str) or not name:
            problems.append((f"{where}.name", "required string"))
            name = ""
        max_amount = _amount(item.get("maxAmount"), f"{where}.maxAmount", problems)
        duration = duration_param(item.get("validDuration", "1s"), f"{where}.validDuration", problems)
        overrides = []
        raw_overrides = item.get("overrides") or []
        if not isinstance(raw_overrides, list):
            problems.append((f"{where}.overrides", "must be a list"))
            raw_overrides = []
        for j, override in enumerate(raw_overrides):
            owhere = f"{where}.overrides[{j}]"
            if not isinstance(override, dict):
                problems.append((owhere, "must be a mapping"))
                continue
            problems += unknown_fields(override, ("dimensions", "maxAmount", "validDuration"), owhere)
            dims = override.get("dimensions") or {}
            if not isinstance(dims, dict):
                problems.append((f"{owhere}.dimensions", "must be a mapping"))
                dims = {}
            overrides.append((
                {str(k): str(v) for k, v in dims.items()},
                _amount(override.get("maxAmount"), f"{owhere}.maxAmount", problems),
                duration_param(override.get("validDuration", item.get("validDuration", "1s")),
                          f"{owhere}.validDuration", problems),
            ))
        out.append((QuotaLimit(name, max_amount, duration, tuple(overrides)), item))
    return out


def _amount(raw: Any, where: str, problems: list[tuple[str, str]]) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        problems.append((where, f"must be a non-negative integer, got {raw!r}"))
        return 0
    return int(raw)


def duration_param(raw: Any, where: str, problems: list[tuple[str, str]]) -> dt.timedelta:
    try:
        value = parse_duration(str(raw))
    except ValueError as exc:
        problems.append((where, str(exc)))
        return dt.timedelta(seconds=1)
    if value <= dt.timedelta(0):
        problems.append((where, "must be positive"))
    return value
