"""The collector's own /metrics text: the per-call families, recorded on mixer.hotmetrics cells, read
exactly as they did when prometheus_client's Counter and Histogram recorded them (the mixer dashboard,
Istio's mixer dashboard and the tests read them); summed over ``--workers`` like the others."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from mixer.selfmetrics import SelfMetrics
from mixer.sharedmetrics import MergedRegistry, SharedMetrics

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
RUNTIME_LABELS = ["handler", "adapter", "meshFunction", "error"]

# Every family in the order /metrics listed them before the per-call ones moved to mixer.hotmetrics.
FAMILIES = [
    "mixer_reports", "mixer_checks", "mixer_dispatches", "mixer_dispatch_errors", "mixer_dispatch_duration_seconds",
    "mixer_evaluation_errors", "mixer_dropped_instances", "mixer_sent_instances", "mixer_rejected_bags",
    "mixer_shed_requests", "mixer_queue_depth", "mixer_handler_refresh_failures", "mixer_check_cache",
    "mixer_check_cache_evictions", "mixer_config_loads", "mixer_kafka_published_bags",
    "mixer_kafka_publish_failures", "mixer_kafka_inflight_bytes", "mixer_kafka_consumed_bags",
    "mixer_kafka_commits", "mixer_kafka_committed_bags", "mixer_kafka_commit_refused_bags",
    "mixer_kafka_redeliveries", "mixer_kafka_dead_letters", "mixer_kafka_consumer_lag", "istio_build",
    "mixer_config_rule_config_count", "mixer_config_instance_config_count", "mixer_config_handler_config_count",
    "mixer_config_attribute_count", "mixer_runtime_dispatches", "mixer_runtime_dispatch_duration_seconds",
    "process_virtual_memory_bytes", "process_resident_memory_bytes", "process_start_time_seconds",
    "process_cpu_seconds", "process_open_fds", "process_max_fds",
]

# (handler, adapter, template, seconds, failed): durations are powers of two (or bounds), so sums are
# exact whatever order they are added in; values on bounds land in their own bucket ("le").
CALLS = [
    ("prom.handler.istio-system", "prometheus", "metric", 2**-14, False),
    ("prom.handler.istio-system", "prometheus", "logentry", 2**-9, True),  # a first call that fails
    ("prom.handler.istio-system", "prometheus", "metric", 0.5, False),
    ("deny.handler.istio-system", "denier", "checknothing", 1.0, False),
    ("prom.handler.istio-system", "prometheus", "logentry", 2**-5, False),
    ("deny.handler.istio-system", "denier", "checknothing", 0.25, True),
    ("prom.handler.istio-system", "prometheus", "metric", 4.0, False),
    ("deny.handler.istio-system", "denier", "checknothing", 0.25, True),
]


class PrometheusClientRecording:
    """The per-call families as prometheus_client recorded them before: same names, help, labels and
    buckets, updated per call as ``SelfMetrics`` and ``DispatchSeries`` used to."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.reports = Counter("mixer_reports", "Attribute bags received for report", ["front_door"], registry=r)
        self.checks = Counter("mixer_checks", "Check requests answered", ["front_door", "result"], registry=r)
        self.dispatches = Counter("mixer_dispatches", "Handler calls", ["handler", "adapter", "template"], registry=r)
        self.dispatch_errors = Counter(
            "mixer_dispatch_errors", "Handler calls that raised", ["handler", "adapter"], registry=r)
        self.dispatch_duration = Histogram("mixer_dispatch_duration_seconds", "Time spent in one handler call",
                                           ["handler", "adapter"], buckets=BUCKETS, registry=r)
        self.check_cache = Counter(
            "mixer_check_cache", "Check verdicts looked up in the mixer's check cache", ["result"], registry=r)
        self.check_cache_evictions = Counter(
            "mixer_check_cache_evictions", "Live check verdicts evicted because the cache was full", registry=r)
        self.runtime_dispatches = Counter(
            "mixer_runtime_dispatches", "Handler calls, as Istio Mixer counted them", RUNTIME_LABELS, registry=r)
        self.runtime_dispatch_duration = Histogram(
            "mixer_runtime_dispatch_duration_seconds", "Time spent in one handler call, as Istio Mixer measured it",
            RUNTIME_LABELS, buckets=BUCKETS, registry=r)
        self._called: set[tuple[str, str, str]] = set()

    def dispatched(self, handler: str, adapter: str, template: str, seconds: float, failed: bool) -> None:
        if (handler, adapter, template) not in self._called:  # the series a first call made
            self._called.add((handler, adapter, template))
            self.dispatches.labels(handler, adapter, template)
            self.dispatch_duration.labels(handler, adapter)
            self.runtime_dispatches.labels(handler, adapter, template, "false")
            self.runtime_dispatch_duration.labels(handler, adapter, template, "false")
        if failed:
            self.dispatch_errors.labels(handler, adapter).inc()
        self.dispatches.labels(handler, adapter, template).inc()
        self.dispatch_duration.labels(handler, adapter).observe(seconds)
        error = "true" if failed else "false"
        self.runtime_dispatches.labels(handler, adapter, template, error).inc()
        self.runtime_dispatch_duration.labels(handler, adapter, template, error).observe(seconds)


def record(metrics: SelfMetrics | PrometheusClientRecording) -> None:
    """The same calls into either, as the runtime makes them (a handler call, a check, a report)."""
    metrics.reports.labels("http").inc(3)
    metrics.reports.labels("als").inc(20)
    metrics.reports.labels("http").inc(1)
    for front_door, result in [("native", "ok"), ("envoy_authz", "denied"), ("native", "ok")]:
        metrics.checks.labels(front_door, result).inc()
    for result in ["miss", "hit", "hit", "miss", "hit"]:
        metrics.check_cache.labels(result).inc()
    metrics.check_cache_evictions.inc()
    for handler, adapter, template, seconds, failed in CALLS:
        if isinstance(metrics, SelfMetrics):
            metrics.dispatch_series(handler, adapter, template).dispatched(seconds, failed)
        else:
            metrics.dispatched(handler, adapter, template, seconds, failed)


def families(text: str) -> dict[str, str]:
    """Each block of the text by the name on its HELP line (the text format writes a counter's
    ``_total`` and ``_created`` as two), with the ``_created`` values (times) left out."""
    text = re.sub(r"(_created(\{[^}]*\})?) \S+", r"\1 CREATED", text)
    blocks = re.split(r"(?m)^(?=# HELP )", text)
    return {block.split()[2]: block for block in blocks if block}


def test_the_per_call_families_read_as_prometheus_client_wrote_them() -> None:
    metrics, before = SelfMetrics(), PrometheusClientRecording()
    metrics.dispatch_series("list.handler.istio-system", "list", "listentry")  # resolved, never called: no series
    record(metrics)
    record(before)
    assert [family.name for family in metrics.registry.collect()] == FAMILIES
    now = families(metrics.exposition().decode())
    expected = families(generate_latest(before.registry).decode())
    assert [name for name in now if name in expected] == list(expected)  # in the same order
    assert {name: now[name] for name in expected} == expected
    assert len(expected) == 18  # nine families, each with its _created block
    assert 'mixer_dispatch_errors_total{adapter="denier",handler="deny.handler.istio-system"} 2.0' in now[
        "mixer_dispatch_errors_total"]


def test_writes_from_two_threads_add_up() -> None:
    """Checks on a thread of their own (their event loop) and reports on another record into the same
    series; nothing is lost and the text is what one thread's calls would give."""
    metrics, before = SelfMetrics(), PrometheusClientRecording()
    threads = [threading.Thread(target=record, args=(metrics,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    record(before)
    record(before)
    now = families(metrics.exposition().decode())
    expected = families(generate_latest(before.registry).decode())
    assert {name: now[name] for name in expected} == expected


def test_workers_snapshots_sum_the_per_call_families(tmp_path: Path) -> None:
    """``mixer serve --workers N``: each worker's snapshot of these families adds up at a scrape."""
    workers = [SelfMetrics(), SelfMetrics()]
    for worker in workers:
        record(worker)
    shared = [SharedMetrics(tmp_path, "self", worker=str(index)) for index in range(len(workers))]
    for part, worker in zip(shared, workers):
        part.publish(list(worker.registry.collect()), sequence=1)
    merged = CollectorRegistry()
    merged.register(MergedRegistry(shared[0].merged()))
    sample = merged.get_sample_value
    assert sample("mixer_reports_total", {"front_door": "http"}) == 8
    assert sample("mixer_checks_total", {"front_door": "native", "result": "ok"}) == 4
    assert sample("mixer_check_cache_total", {"result": "hit"}) == 6
    deny = {"handler": "deny.handler.istio-system", "adapter": "denier"}
    assert sample("mixer_dispatch_errors_total", deny) == 4
    assert sample("mixer_dispatch_duration_seconds_bucket", {**deny, "le": "0.25"}) == 4
    assert sample("mixer_dispatch_duration_seconds_count", deny) == 6
    assert sample("mixer_runtime_dispatches_total",
                  {**deny, "meshFunction": "checknothing", "error": "true"}) == 4
    assert sample("mixer_runtime_dispatch_duration_seconds_sum",
                  {**deny, "meshFunction": "checknothing", "error": "false"}) == 2.0
