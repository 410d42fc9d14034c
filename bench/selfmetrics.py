"""What the mixer's own per-call metrics cost: mixer.selfmetrics (mixer.hotmetrics cells) against the
same recording done with prometheus_client's Counter and Histogram, as it was, in the same run.

Per update (ns, best of ``--repeat`` timings of ``--updates`` calls, one thread):
- ``handler call``: what one handler call records (ours and Istio Mixer's dispatch families; before:
  two ``Counter.inc`` and two ``Histogram.observe`` on resolved children, now one observation);
- ``check counted``: ``mixer_checks`` as ``Runtime.check`` counts it (label lookup and ``inc``);
- ``cache hit counted``: ``mixer_check_cache`` on a resolved series (what a cache hit adds).
Per scrape (µs): the text exposition of those families with ``--handlers`` handlers of two
templates each, every series used (the sums and rollups now happen here).

    .venv/bin/python bench/selfmetrics.py [--updates 200000] [--repeat 5] [--handlers 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import timeit
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest

from mixer.selfmetrics import SelfMetrics

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
RUNTIME_LABELS = ["handler", "adapter", "meshFunction", "error"]
SECONDS = 0.00004  # a typical handler call: the first bucket, which is prometheus_client's quickest search


class Before:
    """The per-call families on prometheus_client, updated as SelfMetrics did before mixer.hotmetrics."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.checks = Counter("mixer_checks", "Check requests answered", ["front_door", "result"], registry=r)
        self.dispatches = Counter("mixer_dispatches", "Handler calls", ["handler", "adapter", "template"], registry=r)
        self.dispatch_duration = Histogram("mixer_dispatch_duration_seconds", "Time spent in one handler call",
                                           ["handler", "adapter"], buckets=BUCKETS, registry=r)
        self.check_cache = Counter("mixer_check_cache", "Check verdicts looked up", ["result"], registry=r)
        self.runtime_dispatches = Counter("mixer_runtime_dispatches", "Handler calls", RUNTIME_LABELS, registry=r)
        self.runtime_dispatch_duration = Histogram("mixer_runtime_dispatch_duration_seconds", "Time spent",
                                                   RUNTIME_LABELS, buckets=BUCKETS, registry=r)
        self._check_counters: dict[tuple[str, bool], Counter] = {}

    def check_counted(self, front_door: str, ok: bool) -> None:
        """As Runtime.check did: the child looked up once per front door and outcome, kept in a dict."""
        counter = self._check_counters.get((front_door, ok))
        if counter is None:
            counter = self._check_counters[(front_door, ok)] = self.checks.labels(front_door, "ok" if ok else "denied")
        counter.inc()

    def dispatch_series(self, handler: str, adapter: str, template: str) -> Callable[[float, bool], None]:
        calls, duration = self.dispatches.labels(handler, adapter, template), self.dispatch_duration.labels(handler, adapter)
        mixer_calls = self.runtime_dispatches.labels(handler, adapter, template, "false")
        mixer_duration = self.runtime_dispatch_duration.labels(handler, adapter, template, "false")

        def dispatched(seconds: float, failed: bool) -> None:
            calls.inc()
            duration.observe(seconds)
            mixer_calls.inc()
            mixer_duration.observe(seconds)

        return dispatched


def recorder(metrics: SelfMetrics | Before, handler: str, template: str) -> Callable[[float, bool], None]:
    """What the dispatcher calls after each handler call."""
    if isinstance(metrics, SelfMetrics):
        return metrics.dispatch_series(handler, "noop", template).dispatched
    return metrics.dispatch_series(handler, "noop", template)


def per_update(metrics: SelfMetrics | Before, updates: int, repeat: int) -> dict[str, float]:
    dispatched = recorder(metrics, "h.handler.ns", "metric")
    count_check: Callable[[], None]
    if isinstance(metrics, SelfMetrics):
        checks = metrics.checks
        count_check = lambda: checks.labels("native_grpc", "ok").inc()  # noqa: E731 - as Runtime.check now does
    else:
        count_check = lambda: metrics.check_counted("native_grpc", True)  # noqa: E731
    hit = metrics.check_cache.labels("hit")
    ops: dict[str, Callable[[], None]] = {
        "handler call": lambda: dispatched(SECONDS, False),
        "check counted": count_check,
        "cache hit counted": lambda: hit.inc(),
    }
    empty = min(timeit.repeat(lambda: None, number=updates, repeat=repeat))  # the lambda call itself
    return {name: (min(timeit.repeat(op, number=updates, repeat=repeat)) - empty) / updates * 1e9
            for name, op in ops.items()}


def per_scrape(metrics: SelfMetrics | Before, handlers: int, repeat: int) -> float:
    for index in range(handlers):
        for template in ("metric", "logentry"):
            dispatched = recorder(metrics, f"h{index}.handler.ns", template)
            for seconds in (0.00004, 0.0003, 0.002, 0.04):
                dispatched(seconds, False)
    metrics.checks.labels("native_grpc", "ok").inc()
    metrics.check_cache.labels("hit").inc()
    families = Families(metrics)
    return min(timeit.repeat(lambda: generate_latest(families), number=20, repeat=repeat)) / 20 * 1e6


class Families:
    """Only the per-call families, in either (SelfMetrics also holds process_* and others)."""

    def __init__(self, metrics: SelfMetrics | Before) -> None:
        self._collectors = [metrics.checks, metrics.dispatches, metrics.dispatch_duration, metrics.check_cache,
                            metrics.runtime_dispatches, metrics.runtime_dispatch_duration]

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--handlers", type=int, default=20)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"load average {load:.1f}; best of {args.repeat} x {args.updates:,} updates")
    before, now = per_update(Before(), args.updates, args.repeat), per_update(SelfMetrics(), args.updates, args.repeat)
    print("| update | prometheus_client ns | mixer.hotmetrics ns | cheaper |")
    print("|---|---|---|---|")
    for name in before:
        print(f"| {name} | {before[name]:,.0f} | {now[name]:,.0f} | {before[name] / now[name]:.1f}x |")
    scrape_before = per_scrape(Before(), args.handlers, args.repeat)
    scrape_now = per_scrape(SelfMetrics(), args.handlers, args.repeat)
    print(f"| scrape, {args.handlers} handlers x 2 templates (µs) | {scrape_before:,.0f} | {scrape_now:,.0f} | "
          f"{scrape_before / scrape_now:.1f}x |")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
