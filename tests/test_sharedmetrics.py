"""Merging the workers' snapshots: amounts add up, start times and limits do not."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from mixer.sharedmetrics import MergedRegistry, SharedMetrics


def _worker(directory: Path, name: str, count: float, start: float, fds: float) -> SharedMetrics:
    registry = CollectorRegistry()
    Counter("mixer_reports", "r", ["front_door"], registry=registry).labels("http").inc(count)
    Histogram("latency", "l", buckets=(1.0,), registry=registry).observe(count)
    Gauge("process_start_time_seconds", "s", registry=registry).set(start)
    Gauge("process_max_fds", "f", registry=registry).set(fds)
    Gauge("mixer_queue_depth", "q", registry=registry).set(count)
    shared = SharedMetrics(directory, "self", worker=name)
    shared.publish(list(registry.collect()), sequence=1)
    return shared


def _samples(shared: SharedMetrics) -> dict[str, float]:
    text = generate_latest(MergedRegistry(shared.merged())).decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_amounts_add_up_and_start_times_and_limits_do_not(tmp_path: Path) -> None:
    first = _worker(tmp_path, "1", 3, start=100, fds=1024)
    _worker(tmp_path, "2", 4, start=50, fds=4096)
    (tmp_path / "self.3.json").write_bytes(b"[{half a file")  # skipped, not fatal
    samples = _samples(first)
    assert samples['mixer_reports_total{front_door="http"}'] == 7
    assert samples["latency_count"] == 2 and samples["latency_sum"] == 7
    assert samples['latency_bucket{le="+Inf"}'] == 2
    assert samples["mixer_queue_depth"] == 7
    assert samples["process_start_time_seconds"] == 50
    assert samples["process_max_fds"] == 4096
    created = [value for name, value in samples.items() if name.startswith("mixer_reports_created")]
    assert len(created) == 1  # one series, the earliest worker's start


def test_an_older_snapshot_never_replaces_a_newer_one(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    counter = Counter("c", "c", registry=registry)
    shared = SharedMetrics(tmp_path, "self", worker="1")
    counter.inc(5)
    newer = list(registry.collect())
    shared.publish(newer, sequence=2)
    counter.inc(100)  # taken earlier (sequence 1), written late
    shared.publish(list(registry.collect()), sequence=1)
    assert _samples(shared)["c_total"] == 5
