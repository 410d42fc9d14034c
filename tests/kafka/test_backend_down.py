"""A push backend down for a minute: the worker stops committing, the topic buffers, and everything
arrives after the backend returns."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from mixer.thirdparty import KafkaBroker
from mixer.processes import free_port

from .cluster import FRONT_DOOR_CONFIG, WORKER_CONFIG, HeldBackend, Mixer, wait_for
from .support import group_lag, new_topic
from .test_failover_e2e import post_reports

DOWN_SECONDS = 60.0
PER_REQUEST = 50


def test_a_backend_down_for_a_minute_gets_its_data_after_it_returns(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    bootstrap = kafka_broker.bootstrap
    topic = asyncio.run(new_topic(bootstrap, partitions=2, prefix="backend-down"))
    group = f"{topic}-workers"
    backend = HeldBackend()
    # Each delivery gives up after 3 s: the worker then reads the batch again from the topic instead
    # of holding it in memory for the whole outage.
    config = WORKER_CONFIG % {"prometheus_port": free_port(), "backend_url": backend.url, "max_elapsed": "3s"}
    front = Mixer(tmp_path, "frontdoor", "frontdoor", bootstrap, topic, FRONT_DOOR_CONFIG)
    worker = Mixer(tmp_path, "worker", "worker", bootstrap, topic, config)
    sent = 0
    try:
        front.start()
        worker.start()
        url = f"http://127.0.0.1:{front.port}/v1/report"
        post_reports(url, sent, PER_REQUEST)
        sent += PER_REQUEST
        wait_for(lambda: len(set(backend.ids)) == sent, 60, "the first reports delivered")
        backend.down()
        down_since = time.monotonic()
        lag_while_down = 0
        while time.monotonic() - down_since < DOWN_SECONDS:  # reports keep coming while it is down
            post_reports(url, sent, PER_REQUEST)
            sent += PER_REQUEST
            time.sleep(2.0)
            lag_while_down = max(lag_while_down, asyncio.run(group_lag(bootstrap, group, topic)))
        redelivered = worker.self_metric("mixer_kafka_redeliveries_total")
        backend.up()
        wait_for(lambda: set(backend.ids) >= {f"r{i}" for i in range(sent)}, 120, "the backlog delivered")
        wait_for(lambda: asyncio.run(group_lag(bootstrap, group, topic)) == 0, 60, "the backlog committed")
    finally:
        front.stop()
        worker.stop()
        backend.close()
    print(f"\nbackend down {DOWN_SECONDS:.0f}s: {sent} reports; at most {lag_while_down} messages waited in the "
          f"topic; batches read again {redelivered:.0f}; delivered ids {len(set(backend.ids))}")
    assert lag_while_down > 0  # the topic held them, not the worker's memory
    assert redelivered > 0
    assert set(backend.ids) == {f"r{i}" for i in range(sent)}
