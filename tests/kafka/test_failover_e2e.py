"""End to end with the real broker: reports in through a front door, two workers, one killed with
SIGKILL mid-batch and restarted; afterwards every report is counted in the Prometheus totals at
least once, and the duplicates are no more than what was dispatched and not committed."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mixer.thirdparty import KafkaBroker

from .cluster import FRONT_DOOR_CONFIG, WORKER_CONFIG, HeldBackend, Mixer, scrape_sum, wait_for
from .support import group_lag, new_topic

REPORTS = 12_000
PER_REQUEST = 100
PAUSE_AT = REPORTS - 20 * PER_REQUEST  # the stream's last 2,000 reports wait for the kill


def worker_config(backend: HeldBackend, prometheus_port: int, max_elapsed: str = "5m") -> str:
    return WORKER_CONFIG % {"prometheus_port": prometheus_port, "backend_url": backend.url, "max_elapsed": max_elapsed}


def post_reports(url: str, first: int, count: int) -> None:
    bags = [
        {"request.id": f"r{i}", "destination.workload.name": f"svc{i % 7}", "request.time": "2026-01-01T00:00:00Z"}
        for i in range(first, first + count)
    ]
    request = urllib.request.Request(
        url, data=json.dumps({"attributes": bags}).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 200


class Stream(threading.Thread):
    """Posts REPORTS bags to the front door in requests of PER_REQUEST, as fast as it answers. It
    stops at PAUSE_AT until ``resume`` is set, so that the test's kill, however late the workers'
    first commit comes on a busy machine, falls mid-stream."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.sent = 0
        self.error: BaseException | None = None
        self.resume = threading.Event()

    def run(self) -> None:
        try:
            for first in range(0, REPORTS, PER_REQUEST):
                if first == PAUSE_AT and not self.resume.wait(300):
                    raise TimeoutError(f"not resumed after {PAUSE_AT} reports")
                post_reports(self.url, first, PER_REQUEST)
                self.sent = first + PER_REQUEST
        except BaseException as exc:  # reported by the test
            self.error = exc


@pytest.fixture
def backend() -> Iterator[HeldBackend]:
    server = HeldBackend()
    yield server
    server.close()


def test_a_worker_killed_mid_batch_loses_nothing(kafka_broker: KafkaBroker, backend: HeldBackend,
                                                 tmp_path: Path) -> None:
    topic = asyncio.run(new_topic(kafka_broker.bootstrap, partitions=4, prefix="failover"))
    bootstrap = kafka_broker.bootstrap
    front = Mixer(tmp_path, "frontdoor", "frontdoor", bootstrap, topic, FRONT_DOOR_CONFIG)
    prom_a, prom_b = (free_prometheus_port() for _ in range(2))
    worker_a = Mixer(tmp_path, "worker-a", "worker", bootstrap, topic, worker_config(backend, prom_a))
    worker_b = Mixer(tmp_path, "worker-b", "worker", bootstrap, topic, worker_config(backend, prom_b))
    counted = lambda port: scrape_sum(f"http://127.0.0.1:{port}/metrics", "istio_reports_total")  # noqa: E731
    try:
        for mixer in (front, worker_a, worker_b):
            mixer.start()
        stream = Stream(f"http://127.0.0.1:{front.port}/v1/report")
        stream.start()
        # Mid-stream, once A has committed work: hold the push backend, so A (and B) dispatch a batch
        # and wait on its delivery; A then holds counted bags it has not committed. Kill it there.
        wait_for(lambda: worker_a.self_metric("mixer_kafka_committed_bags_total") > 0, 60, "A's first commit")
        backend.hold()
        wait_for(lambda: holds_an_uncommitted_batch(worker_a), 30, "A holding an uncommitted batch")
        killed_counted = counted(prom_a)
        uncommitted = (worker_a.self_metric("mixer_kafka_consumed_bags_total")
                       - worker_a.self_metric("mixer_kafka_committed_bags_total"))
        worker_a.kill()
        sent_at_kill = stream.sent
        stream.resume.set()
        backend.release()
        worker_a.start()  # the same worker restarted: a new process, its counters from zero
        stream.join(240)
        assert stream.error is None, f"the front door refused a report: {stream.error}"
        assert not stream.is_alive() and stream.sent == REPORTS
        wait_for(lambda: asyncio.run(group_lag(bootstrap, f"{topic}-workers", topic)) == 0, 120,
                 "every message committed")
        refused = sum(w.self_metric("mixer_kafka_commit_refused_bags_total") for w in (worker_a, worker_b))
        total = killed_counted + counted(prom_a) + counted(prom_b)
    finally:
        for mixer in (front, worker_a, worker_b):
            mixer.stop()
    duplicates = total - REPORTS
    print(f"\nfailover: {REPORTS} reports ({sent_at_kill} sent when worker A was killed); Prometheus totals "
          f"{total:.0f} (killed A {killed_counted:.0f} before SIGKILL); duplicates {duplicates:.0f}; "
          f"A's uncommitted batch {uncommitted:.0f}; bags whose commit the group refused in rebalances {refused:.0f}")
    assert 0 < sent_at_kill < REPORTS, "the kill was not mid-stream"
    assert uncommitted > 0
    assert total >= REPORTS, f"{REPORTS - total:.0f} reports were lost"
    assert duplicates <= uncommitted + refused
    assert set(backend.ids) == {f"r{i}" for i in range(REPORTS)}  # the push backend got every report too


def holds_an_uncommitted_batch(worker: Mixer) -> bool:
    """True once the worker has consumed bags it cannot commit: its commits stand still while its
    consumed count is ahead. A single look is not enough: a batch delivered just before the backend was
    held still commits after it, and the two counters are read from separate scrapes."""
    committed_before = worker.self_metric("mixer_kafka_committed_bags_total")
    consumed = worker.self_metric("mixer_kafka_consumed_bags_total")
    time.sleep(0.5)
    committed_after = worker.self_metric("mixer_kafka_committed_bags_total")
    return committed_before == committed_after and consumed > committed_after


def free_prometheus_port() -> int:
    from mixer.processes import free_port

    return free_port()
