"""Instances/s offered through PushQueue into a no-op async sender, on one core, until drained.

Baseline, measured in the same run: a bare ``list.append`` loop over the same items in the same
batches. The queue path offers each batch of ``--batch`` items (as a report handler does, once per
dispatched batch), yields to the event loop once per batch (as the front door does between requests)
so the senders can run, and is timed until every item has been handed to the sender (flush).

    .venv/bin/python bench/push.py [--items 1000000] [--batch 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import time
from typing import Any

from mixer.push import DeliverySettings, PushQueue
from mixer.sdk import Env
from mixer.selfmetrics import SelfMetrics


def make_items(count: int) -> list[dict[str, Any]]:
    return [{"instance": "accesslog.instance.istio-system", "n": i, "path": f"/item/{i % 97}"} for i in range(count)]


def baseline(items: list[dict[str, Any]], batch: int) -> float:
    """Append the same items, batch by batch, to a list; returns seconds."""
    started = time.perf_counter()
    out: list[dict[str, Any]] = []
    append = out.append
    for start in range(0, len(items), batch):
        for item in items[start : start + batch]:
            append(item)
    elapsed = time.perf_counter() - started
    assert len(out) == len(items)
    return elapsed


async def through_queue(items: list[dict[str, Any]], batch: int) -> float:
    """Offer batches, then flush; returns seconds. Every item must be sent, none dropped."""
    env = Env("bench.istio-system", logging.getLogger("bench.push"), SelfMetrics())

    async def send(batch: list[dict[str, Any]]) -> None:
        return None

    queue: PushQueue[dict[str, Any]] = PushQueue(send, DeliverySettings(), env)
    await queue.start()
    started = time.perf_counter()
    for start in range(0, len(items), batch):
        queue.offer(items[start : start + batch])
        await asyncio.sleep(0)
    await queue.flush()
    elapsed = time.perf_counter() - started
    await queue.close()
    assert queue.sent == len(items) and not any(queue.dropped.values()), (queue.sent, queue.dropped)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    items = make_items(args.items)
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}, pinned to 1 core")
    print(f"items: {args.items}, batch: {args.batch}, default DeliverySettings (batch_size 512, 2 senders), best of {args.repeat}")
    base = min(baseline(items, args.batch) for _ in range(args.repeat))
    queued = min(asyncio.run(through_queue(items, args.batch)) for _ in range(args.repeat))
    print(f"baseline (list.append loop):          {args.items / base:12,.0f} instances/s")
    print(f"PushQueue (offer, batch, no-op send): {args.items / queued:12,.0f} instances/s")
    print(f"cost ratio queue/baseline: {queued / base:.2f}x")


if __name__ == "__main__":
    main()
