"""Counters and histograms cheap enough to update on every check: plain arithmetic on cells, turned
into prometheus_client's families only when scraped.

prometheus_client takes a lock per ``inc``/``observe`` and finds a histogram's bucket in a Python
loop; here an update is a dict lookup, a ``bisect`` and one or two adds. Each family is a collector
registered in a ``CollectorRegistry`` where the Counter or Histogram it replaces was, and exposes the
same text: names, HELP, TYPE, label names and order, buckets, ``_created``.

Why no update is lost without a lock: every series keeps one list of numbers per thread that writes
it, keyed by thread id and made (under the family's lock) the first time that thread writes; a
thread only ever adds to its own list, so no two threads read-modify-write the same number. A scrape
sums the lists. A thread id is reused only after its thread ended, so a list never has two live
writers. A scrape reads while writers add, so it may see an observation's bucket before its sum;
the next scrape sees both.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from threading import get_ident
from typing import Literal, cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

_go = cast(Callable[[float], str], floatToGoString)  # untyped in prometheus_client

__all__ = ["CounterFamily", "CounterSeries", "HistogramFamily", "HistogramSeries", "Rollup"]

Labels = tuple[str, ...]


def created_series_enabled() -> bool:
    """Whether ``_created`` samples are exposed: prometheus_client's own switch, read the same way."""
    return os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in ("true", "1", "t")


class _Series:
    """One label set's numbers: a list per writing thread (``by_thread``), summed by ``totals``."""

    __slots__ = ("by_thread", "width", "lock", "created")

    def __init__(self, width: int, lock: threading.Lock) -> None:
        self.by_thread: dict[int, list[float]] = {}
        self.width = width
        self.lock = lock
        self.created = time.time()

    def thread_cells(self) -> list[float]:
        """The calling thread's list, made on its first write (the slow path: once per thread). A
        writer that only ever runs on one thread may keep it and add to it in place, as ``inc`` and
        ``observe`` do, without a call per update."""
        ident = get_ident()
        with self.lock:
            cells = self.by_thread.get(ident)
            if cells is None:
                cells = self.by_thread[ident] = [0] * self.width
        return cells

    def totals(self) -> list[float]:
        with self.lock:
            lists = list(self.by_thread.values())
        return [sum(column) for column in zip(*lists)] if lists else [0] * self.width


class CounterSeries(_Series):
    """One counter series; ``inc`` is its hot path."""

    __slots__ = ()

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(1, lock)

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        (self.by_thread.get(get_ident()) or self.thread_cells())[0] += amount

    def value(self) -> float:
        return float(self.totals()[0])


class HistogramSeries(_Series):
    """One histogram series: a count per bucket (not cumulative) then the sum; ``observe`` is its hot path."""

    __slots__ = ("bounds",)

    def __init__(self, bounds: tuple[float, ...], lock: threading.Lock) -> None:
        super().__init__(len(bounds) + 1, lock)
        self.bounds = bounds  # ends with +Inf, so every value has a bucket

    def observe(self, value: float) -> None:
        cells = self.by_thread.get(get_ident()) or self.thread_cells()
        cells[bisect_left(self.bounds, value)] += 1  # the first bound >= value: Prometheus' "le"
        cells[-1] += value


class _Family:
    """What counters and histograms share: the label sets, made once each, in the order first used."""

    kind: Literal["counter", "histogram"]

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.lock = threading.Lock()
        self.created_series = created_series_enabled()

    def describe(self) -> list[Metric]:
        """The names the registry checks for clashes (without it they would go unchecked)."""
        return [Metric(self.name, self.documentation, self.kind)]


class CounterFamily(_Family):
    """A labelled counter with prometheus_client ``Counter``'s exposition. ``labels(...)`` once per
    label set, then ``inc`` on the series it returns."""

    kind: Literal["counter"] = "counter"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 registry: CollectorRegistry | None = None) -> None:
        super().__init__(name, documentation, labelnames)
        self.series: dict[Labels, CounterSeries] = {}
        if not self.labelnames:  # as prometheus_client: an unlabelled counter exists (at 0) from the start
            self.labels()
        if registry is not None:
            registry.register(self)

    def labels(self, *values: str) -> CounterSeries:
        series = self.series.get(values)
        if series is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
            with self.lock:
                series = self.series.setdefault(values, CounterSeries(self.lock))
        return series

    def collect(self) -> list[Metric]:
        metric = Metric(self.name, self.documentation, "counter")
        with self.lock:
            series = list(self.series.items())
        for values, one in series:
            labels = dict(zip(self.labelnames, values))
            metric.add_sample(self.name + "_total", labels, one.value())
            if self.created_series:
                metric.add_sample(self.name + "_created", labels, one.created)
        return [metric]


class HistogramFamily(_Family):
    """A labelled histogram with prometheus_client ``Histogram``'s exposition (and its buckets)."""

    kind: Literal["histogram"] = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float],
                 registry: CollectorRegistry | None = None) -> None:
        super().__init__(name, documentation, labelnames)
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError(f"{name}: buckets not in sorted order")
        if not bounds or bounds[-1] != float("inf"):
            bounds.append(float("inf"))
        self.bounds = tuple(bounds)
        self.le = tuple(_go(bound) for bound in bounds)  # the buckets' label values
        self.series: dict[Labels, HistogramSeries] = {}
        if registry is not None:
            registry.register(self)

    def labels(self, *values: str) -> HistogramSeries:
        series = self.series.get(values)
        if series is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
            with self.lock:
                series = self.series.setdefault(values, HistogramSeries(self.bounds, self.lock))
        return series

    def snapshot(self) -> list[tuple[Labels, list[float], float]]:
        """Every series' label values, totals (bucket counts, then the sum) and creation time, in the
        order they were made."""
        with self.lock:
            series = list(self.series.items())
        return [(values, one.totals(), one.created) for values, one in series]

    def collect(self) -> list[Metric]:
        metric = Metric(self.name, self.documentation, "histogram")
        for values, totals, created in self.snapshot():
            _add_histogram(metric, self, dict(zip(self.labelnames, values)), totals, created)
        return [metric]


class Rollup:
    """A family computed at scrape from a histogram family's series: their counts (``kind`` counter)
    or their buckets (histogram), summed over the labels it leaves out. ``keep`` picks the source's
    label positions it keeps, named ``labelnames``; ``where`` picks the source series it sums.

    One observation then serves several families: the mixer's own dispatch counters and histograms
    are rollups of Istio Mixer's ``mixer_runtime_dispatch_duration_seconds``, so a handler call is
    recorded once, not five times."""

    def __init__(self, source: HistogramFamily, name: str, documentation: str,
                 kind: Literal["counter", "histogram"], labelnames: Sequence[str], keep: Sequence[int],
                 where: Callable[[Labels], bool] | None = None, registry: CollectorRegistry | None = None) -> None:
        if len(labelnames) != len(keep):
            raise ValueError(f"{name}: {len(labelnames)} label names for {len(keep)} kept labels")
        self.source = source
        self.name = name
        self.documentation = documentation
        self.kind = kind
        self.labelnames = tuple(labelnames)
        self.bounds, self.le = source.bounds, source.le
        self._keep = tuple(keep)
        self._where = where
        self.created_series = source.created_series
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[Metric]:
        return [Metric(self.name, self.documentation, self.kind)]

    def collect(self) -> list[Metric]:
        groups: dict[Labels, tuple[list[float], float]] = {}  # in the order their first series was made
        for values, totals, created in self.source.snapshot():
            if self._where is not None and not self._where(values):
                continue
            key = tuple(values[i] for i in self._keep)
            group = groups.get(key)
            if group is None:
                groups[key] = (totals, created)
            else:
                summed, first = group
                groups[key] = ([a + b for a, b in zip(summed, totals)], min(first, created))
        metric = Metric(self.name, self.documentation, self.kind)
        for key, (totals, created) in groups.items():
            labels = dict(zip(self.labelnames, key))
            if self.kind == "histogram":
                _add_histogram(metric, self, labels, totals, created)
                continue
            metric.add_sample(self.name + "_total", labels, float(sum(totals[:-1])))
            if self.created_series:
                metric.add_sample(self.name + "_created", labels, created)
        return [metric]


def _add_histogram(metric: Metric, family: HistogramFamily | Rollup, labels: dict[str, str],
                   totals: list[float], created: float) -> None:
    """One series' samples as prometheus_client's Histogram writes them: cumulative buckets, count,
    sum (when no bucket is negative), created."""
    accumulated = 0.0
    for le, count in zip(family.le, totals):
        accumulated += count
        metric.add_sample(family.name + "_bucket", {**labels, "le": le}, accumulated)
    metric.add_sample(family.name + "_count", labels, accumulated)
    if family.bounds[0] >= 0:
        metric.add_sample(family.name + "_sum", labels, float(totals[-1]))
    if family.created_series:
        metric.add_sample(family.name + "_created", labels, created)
