"""mixer.hotmetrics: the same exposition as prometheus_client for the same updates, no update lost
across threads, rollups summed over the labels they leave out."""

from __future__ import annotations

import re
import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from mixer.hotmetrics import CounterFamily, HistogramFamily, Rollup

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def same_created(text: bytes) -> str:
    """The text with every ``_created`` value replaced: they are the times series were made."""
    return re.sub(r"(_created(\{[^}]*\})?) \S+", r"\1 CREATED", text.decode())


def test_counters_and_histograms_expose_what_prometheus_client_does() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counter = CounterFamily("calls", "Calls made", ["door", "result"], registry=ours)
    reference = Counter("calls", "Calls made", ["door", "result"], registry=theirs)
    unlabelled = CounterFamily("evictions", "Evicted", registry=ours)
    reference_unlabelled = Counter("evictions", "Evicted", registry=theirs)
    histogram = HistogramFamily("took_seconds", "Time taken", ["handler"], BUCKETS, registry=ours)
    reference_histogram = Histogram("took_seconds", "Time taken", ["handler"], buckets=BUCKETS, registry=theirs)

    for door, result, amount in [("http", "ok", 1), ("grpc", "denied", 3), ("http", "ok", 2.5), ("http", "denied", 0)]:
        counter.labels(door, result).inc(amount)
        reference.labels(door, result).inc(amount)
    unlabelled.labels().inc()
    reference_unlabelled.inc()
    # every bound exactly (it belongs to its own bucket: "le"), between bounds, below the first, past the last
    values = [*BUCKETS, 0.0, 0.00003, 0.0007, 0.3, 2.0, 1e9]
    for handler in ("b", "a"):
        for value in values:
            histogram.labels(handler).observe(value)
            reference_histogram.labels(handler).observe(value)
    histogram.labels("never")
    reference_histogram.labels("never")

    assert same_created(generate_latest(ours)) == same_created(generate_latest(theirs))
    assert same_created(generate_openmetrics(ours)) == same_created(generate_openmetrics(theirs))


def test_a_family_without_labels_exists_at_zero_and_others_only_once_used() -> None:
    registry = CollectorRegistry()
    CounterFamily("evictions", "Evicted", registry=registry)
    family = CounterFamily("checks", "Checks", ["result"], registry=registry)
    assert registry.get_sample_value("evictions_total") == 0
    assert registry.get_sample_value("checks_total", {"result": "ok"}) is None
    family.labels("ok")
    assert registry.get_sample_value("checks_total", {"result": "ok"}) == 0


def test_wrong_use_is_refused() -> None:
    registry = CollectorRegistry()
    family = CounterFamily("checks", "Checks", ["result"], registry=registry)
    with pytest.raises(ValueError, match="non-negative"):
        family.labels("ok").inc(-1)
    with pytest.raises(ValueError, match="expected labels"):
        family.labels("ok", "extra")
    with pytest.raises(ValueError, match="sorted"):
        HistogramFamily("h", "h", [], (1.0, 0.5))
    with pytest.raises(ValueError, match="Duplicated"):  # its names are described to the registry
        Counter("checks", "again", registry=registry)


def test_threads_each_write_their_own_cells_and_lose_nothing() -> None:
    counter = CounterFamily("c", "c", ["k"]).labels("x")
    histogram = HistogramFamily("h", "h", ["k"], BUCKETS)
    rounds, writers = 20_000, 4
    start = threading.Barrier(writers + 1)
    seen: list[float] = []

    def write() -> None:
        series = histogram.labels("x")  # resolved once per thread, as the hot paths do
        start.wait()
        for _ in range(rounds):
            counter.inc()
            series.observe(0.5)

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for thread in threads:
        thread.start()
    start.wait()
    while any(thread.is_alive() for thread in threads):
        seen.append(counter.value())  # scrapes while they write: never going backwards
    for thread in threads:
        thread.join()

    assert seen == sorted(seen)
    assert counter.value() == rounds * writers
    assert len(counter.by_thread) == writers  # no two threads add to the same number
    [(_, totals, _)] = histogram.snapshot()
    assert totals[BUCKETS.index(0.5)] == rounds * writers and sum(totals[:-1]) == rounds * writers
    assert totals[-1] == 0.5 * rounds * writers


def test_a_rollup_sums_the_series_it_keeps_apart_by_label() -> None:
    registry = CollectorRegistry()
    source = HistogramFamily("took_seconds", "per call", ["handler", "template", "error"], (0.5, 1.0))
    calls = Rollup(source, "calls", "Calls", "counter", ["handler"], (0,), registry=registry)
    errors = Rollup(source, "errors", "Failed calls", "counter", ["handler"], (0,),
                    where=lambda labels: labels[2] == "true", registry=registry)
    took = Rollup(source, "handler_seconds", "per handler", "histogram", ["handler"], (0,), registry=registry)
    registry.register(source)
    for handler, template, error, value in [("a", "metric", "false", 0.25), ("a", "logentry", "false", 0.75),
                                            ("a", "metric", "true", 2.0), ("b", "metric", "false", 0.5)]:
        source.labels(handler, template, error).observe(value)
    sample = registry.get_sample_value
    assert sample("calls_total", {"handler": "a"}) == 3 and sample("calls_total", {"handler": "b"}) == 1
    assert sample("errors_total", {"handler": "a"}) == 1 and sample("errors_total", {"handler": "b"}) is None
    assert sample("handler_seconds_bucket", {"handler": "a", "le": "0.5"}) == 1
    assert sample("handler_seconds_bucket", {"handler": "a", "le": "1.0"}) == 2
    assert sample("handler_seconds_bucket", {"handler": "a", "le": "+Inf"}) == 3
    assert sample("handler_seconds_sum", {"handler": "a"}) == 3.0
    assert [m.name for m in registry.collect()] == ["calls", "errors", "handler_seconds", "took_seconds"]
    assert calls.kind == "counter" and took.kind == "histogram" and errors.describe()[0].name == "errors"
