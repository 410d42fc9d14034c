"""Per-metric series stores: the hot path is a dict lookup and an add; labels become text at scrape.

A series is keyed by the tuple of its label values as the instance carried them. Each store caps its
series count: past ``max_series`` new label sets fold into one overflow series whose every label is
``__overflow__``, and the fold is counted. Series not updated for ``expiry`` seconds are removed.
"""

from __future__ import annotations

from bisect import bisect_left
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from adapters.prometheus.config import OVERFLOW_LABEL, Kind, MetricInfo
from mixer.series import label_text, series_keying


class Series:
    """One label set: ``value`` (counter/gauge) or ``counts``+``sum`` (histogram), and when last fed."""

    __slots__ = ("key", "value", "counts", "sum", "seen")

    def __init__(self, key: tuple[Any, ...], buckets: int, now: float) -> None:
        self.key = key
        self.value = 0.0
        self.counts: list[int] = [0] * buckets if buckets else []  # per bucket, not cumulative; last is +Inf
        self.sum = 0.0
        self.seen = now


class MetricStore:
    """The series of one metric family and the counts of what it could not take."""

    def __init__(self, info: MetricInfo, dimension_names: Sequence[str]) -> None:
        self.info = info
        self.dimension_names = tuple(dimension_names)
        self.max_series = info.max_series
        self.series: dict[tuple[Any, ...], Series] = {}
        self.overflow: Series | None = None
        self.folded = 0  # instances that landed in the overflow series
        self.rejected = 0  # instances whose value was not a usable number
        self._buckets = len(info.bounds) + 1 if info.kind is Kind.DISTRIBUTION else 0
        self._project, self._order = series_keying(info.label_names, dimension_names)
        self.add: Callable[[Any, tuple[Any, ...], float], None] = {
            Kind.COUNTER: self._add_counter,
            Kind.GAUGE: self._set_gauge,
            Kind.DISTRIBUTION: self._observe,
        }[info.kind]

    # The three feeders repeat the lookup inline: a shared helper costs a call per instance.
    def _add_counter(self, value: Any, dimensions: tuple[Any, ...], now: float) -> None:
        if type(value) is not int and type(value) is not float:
            value = as_number(value)
        if value is None or value < 0 or value != value:  # counters only go up; NaN never counts
            self.rejected += 1
            return
        key = dimensions if self._project is None else self._project(dimensions)
        try:
            series = self.series.get(key)
        except TypeError:
            key, series = self._hashable(key)
        if series is None:
            series = self._new(key, now)
        series.seen = now
        series.value += value

    def _set_gauge(self, value: Any, dimensions: tuple[Any, ...], now: float) -> None:
        if type(value) is not int and type(value) is not float:
            value = as_number(value)
            if value is None:
                self.rejected += 1
                return
        key = dimensions if self._project is None else self._project(dimensions)
        try:
            series = self.series.get(key)
        except TypeError:
            key, series = self._hashable(key)
        if series is None:
            series = self._new(key, now)
        series.seen = now
        series.value = value

    def _observe(self, value: Any, dimensions: tuple[Any, ...], now: float) -> None:
        if type(value) is not int and type(value) is not float:
            value = as_number(value)
        if value is None or value != value:
            self.rejected += 1
            return
        key = dimensions if self._project is None else self._project(dimensions)
        try:
            series = self.series.get(key)
        except TypeError:
            key, series = self._hashable(key)
        if series is None:
            series = self._new(key, now)
        series.seen = now
        series.counts[bisect_left(self.info.bounds, value)] += 1  # "le": a value on a bound counts in it
        series.sum += value

    def _hashable(self, key: tuple[Any, ...]) -> tuple[tuple[Any, ...], Series | None]:
        """An unhashable value (a map) in the key: key on the values' text instead."""
        key = tuple(label_text(v) for v in key)
        return key, self.series.get(key)

    def _new(self, key: tuple[Any, ...], now: float) -> Series:
        if len(self.series) < self.max_series:
            series = self.series[key] = Series(key, self._buckets, now)
            return series
        # Cardinality guard: memory stays bounded whatever the label values do.
        self.folded += 1
        if self.overflow is None:
            width = len(key)
            self.overflow = Series((OVERFLOW_LABEL,) * width, self._buckets, now)
        return self.overflow

    def expire(self, before: float) -> int:
        """Drop series last fed before ``before``; return how many went."""
        stale = [key for key, series in self.series.items() if series.seen < before]
        for key in stale:
            del self.series[key]
        if self.overflow is not None and self.overflow.seen < before:
            self.overflow = None
            stale.append(())
        return len(stale)

    def snapshot(self) -> list[tuple[tuple[str, ...], float, list[int], float]]:
        """A scrape's copy: (label values as text, value, cumulative bucket counts, sum) per series."""
        everything = list(self.series.values())
        if self.overflow is not None:
            everything.append(self.overflow)
        out = []
        texts: dict[Any, str] = {}  # label values repeat across series: convert each distinct one once
        order = self._order
        for series in everything:
            values = series.key if order is None else [series.key[i] for i in order]
            labels = tuple(texts[v] if v in texts else texts.setdefault(v, label_text(v)) for v in values)
            cumulative: list[int] = []
            if self._buckets:
                running = 0
                for count in series.counts:
                    running += count
                    cumulative.append(running)
            out.append((labels, series.value, cumulative, series.sum))
        return out


def as_number(value: Any) -> float | None:
    """A metric value as a float: numbers, durations (seconds), numeric strings; None otherwise."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
