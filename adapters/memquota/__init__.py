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
    unknown_fields,
)

__all__ = ["MemQuotaAdapter", "MemQuotaHandler", "QuotaLimit"]

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


def _names(qualified: str) -> tuple[str, ...]:
    """The names a quota instance may be configured under."""
    parts = qualified.split(".")
    if len(parts) >= 3:
        return (qualified, parts[0], f"{parts[0]}.{parts[2]}")
    return (qualified, parts[0])


class MemQuotaHandler(Handler):
    def __init__(self, params: MemQuotaParams, env: Env, clock: Callable[[], float] | None = None) -> None:
        self.env = env
        self._clock = clock or env.clock
        self._limits = {limit.name: limit for limit in params.quotas}
        self._windows: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}  # key -> [start, used]

    def _limit_for(self, instance: Instance) -> QuotaLimit | None:
        for name in _names(instance.name):
            if name in self._limits:
                return self._limits[name]
        return None

    async def allocate_quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        limit = self._limit_for(instance)
        if limit is None:
            return QuotaResult(args.amount)  # not configured here: unlimited
        dimensions = {k: str(v) for k, v in (instance.fields.get("dimensions") or {}).items()}
        max_amount, duration = limit.max_amount, limit.valid_duration
        for match, amount, override_duration in limit.overrides:
            if all(dimensions.get(k) == v for k, v in match.items()):
                max_amount, duration = amount, override_duration
                break
        now = self._clock()
        key = (limit.name, tuple(sorted(dimensions.items())))
        window = self._windows.get(key)
        seconds = duration.total_seconds()
        if window is None or now - window[0] >= seconds:
            if window is None and len(self._windows) >= MAX_WINDOWS:
                self._sweep(now)
            window = [now, 0.0]
            self._windows[key] = window
        left = max_amount - int(window[1])
        granted = min(args.amount, left) if args.best_effort else (args.amount if args.amount <= left else 0)
        window[1] += granted
        until_reset = dt.timedelta(seconds=max(seconds - (now - window[0]), 0.0))
        code = OK if granted or args.amount == 0 else RESOURCE_EXHAUSTED
        return QuotaResult(granted, until_reset, code, "" if code == OK else f"quota {limit.name} exhausted",
                              remaining=left - granted, limit=max_amount, window=duration)

    def _sweep(self, now: float) -> None:
        expired = [key for key, (start, _) in self._windows.items() if now - start >= self._duration(key[0])]
        for key in expired:
            del self._windows[key]
        if len(self._windows) >= MAX_WINDOWS:
            # Still full of live windows: forget the oldest rather than grow without bound.
            oldest = sorted(self._windows, key=lambda k: self._windows[k][0])[: len(self._windows) // 10 + 1]
            for key in oldest:
                del self._windows[key]
            self.env.count_dropped(len(oldest), "memquota_windows_full")

    def _duration(self, name: str) -> float:
        return self._limits[name].valid_duration.total_seconds()


class MemQuotaAdapter(Adapter):
    name = "memquota"
    templates = frozenset({"quota"})

    def parse_params(self, raw: Mapping[str, Any]) -> MemQuotaParams:
        problems = unknown_fields(raw, ("quotas",))
        quotas: list[QuotaLimit] = []
        raw_quotas = raw.get("quotas", [])
        if not isinstance(raw_quotas, list):
            problems.append(("quotas", "must be a list"))
            raw_quotas = []
        for i, item in enumerate(raw_quotas):
            where = f"quotas[{i}]"
            if not isinstance(item, dict):
                problems.append((where, "must be a mapping with name, maxAmount, validDuration"))
                continue
            problems += unknown_fields(item, ("name", "maxAmount", "validDuration", "overrides"), where)
            name = item.get("name")
            if not isinstance(name, str) or not name:
                problems.append((f"{where}.name", "required string"))
                name = ""
            max_amount = _amount(item.get("maxAmount"), f"{where}.maxAmount", problems)
            duration = _duration(item.get("validDuration", "1s"), f"{where}.validDuration", problems)
            overrides = []
            for j, override in enumerate(item.get("overrides") or []):
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
                    _duration(override.get("validDuration", item.get("validDuration", "1s")),
                              f"{owhere}.validDuration", problems),
                ))
            quotas.append(QuotaLimit(name, max_amount, duration, tuple(overrides)))
        if problems:
            raise ParamsError(problems)
        return MemQuotaParams(tuple(quotas))

    def build(self, params: Any, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        return MemQuotaHandler(params, env)


def _amount(raw: Any, where: str, problems: list[tuple[str, str]]) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        problems.append((where, f"must be a non-negative integer, got {raw!r}"))
        return 0
    return int(raw)


def _duration(raw: Any, where: str, problems: list[tuple[str, str]]) -> dt.timedelta:
    try:
        value = parse_duration(str(raw))
    except ValueError as exc:
        problems.append((where, str(exc)))
        return dt.timedelta(seconds=1)
    if value <= dt.timedelta(0):
        problems.append((where, "must be positive"))
    return value
