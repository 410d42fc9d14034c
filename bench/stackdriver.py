"""The stackdriver adapter's cost: bags/s through Istio's default metric config into it (aggregation,
then one push of every series to the loopback fake MetricService, awaited) against the same config
into the no-op handler, in the same run, on one core; and what one push of many series costs.

Times are CPU seconds of this process (its gRPC threads included; the fake's are its own process's),
so other load on a shared machine does not count; bags/s is bags per CPU second.

    .venv/bin/python bench/stackdriver.py [--bags 200000] [--batch 100] [--repeat 3] [--series 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import sys
import time
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import yaml
from google.cloud.monitoring_v3.types import metric as metric_types

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dispatch import NOOP_HANDLER, make_bags, mixer_path  # noqa: E402 - the sibling bench's bags
from prometheus import build_runtime, cpu_model  # noqa: E402 - same runtime set-up as the prometheus bench

from adapters.stackdriver import StackdriverAdapter, StackdriverHandler  # noqa: E402
from mixer import processes  # noqa: E402
from mixer.runtime import Runtime  # noqa: E402
from mixer.sdk import Env, InstanceSchema, MetricInstance  # noqa: E402
from mixer.selfmetrics import SelfMetrics  # noqa: E402

# Istio's eight standard metrics as Cloud Monitoring custom metrics, durations in ms, sizes in bytes
# (Istio 1.4's stackdriver buckets: exponential, 20 finite, scale 1, growth 2).
EXPONENTIAL = {"exponentialBuckets": {"numFiniteBuckets": 20, "scale": 1, "growthFactor": 2}}
METRICS = {
    "requestcount": ("requests_total", "INT64", "1"),
    "requestduration": ("request_duration_milliseconds", "DISTRIBUTION", "ms"),
    "requestsize": ("request_bytes", "DISTRIBUTION", "By"),
    "responsesize": ("response_bytes", "DISTRIBUTION", "By"),
    "tcpbytesent": ("tcp_sent_bytes_total", "INT64", "By"),
    "tcpbytereceived": ("tcp_received_bytes_total", "INT64", "By"),
    "tcpconnectionsopened": ("tcp_connections_opened_total", "INT64", "1"),
    "tcpconnectionsclosed": ("tcp_connections_closed_total", "INT64", "1"),
}


def stackdriver_handler_doc(endpoint: str) -> str:
    """The default config's handler named ``prometheus`` (so its rules route here), as stackdriver."""
    info = {
        f"{instance}.instance.istio-system": {
            "kind": "CUMULATIVE", "value": value, "unit": unit, "metricType": f"custom.googleapis.com/istio/{name}",
            **({"buckets": EXPONENTIAL} if value == "DISTRIBUTION" else {}),
        }
        for instance, (name, value, unit) in METRICS.items()
    }
    return yaml.safe_dump({
        "apiVersion": "config.istio.io/v1alpha2", "kind": "handler",
        "metadata": {"name": "prometheus", "namespace": "istio-system"},
        "spec": {"compiledAdapter": "stackdriver", "params": {
            "projectId": "bench-project", "endpoint": endpoint, "insecure": True, "pushInterval": "10m",
            "metricInfo": info}},
    })


def stackdriver_path(loop: asyncio.AbstractEventLoop, runtime: Runtime, bags: list[dict[str, Any]], batch: int) -> float:
    """Report every bag, then push every series and wait until the fake has answered for all."""
    handler = runtime.snapshot.slots["prometheus.handler.istio-system"].handler
    assert isinstance(handler, StackdriverHandler)

    async def push() -> None:  # on the loop, as the handler's ticker does it
        handler.flush()
        await handler.queue.flush()

    started = time.process_time()
    mixer_path(runtime, bags, batch)
    loop.run_until_complete(push())
    return time.process_time() - started


@contextlib.contextmanager
def fake_service() -> Iterator[str]:
    """The loopback fake MetricService in a process of its own (its work is the service's, not the
    adapter's, so it must not share the measured core); yields its host:port."""
    port = processes.free_port()
    child = processes.start([sys.executable, "-m", "adapters.stackdriver.fake", "--port", str(port)])
    try:
        processes.wait_for_port(port, 30.0, child)
        yield f"127.0.0.1:{port}"
    finally:
        processes.stop(child)


def dispatch_figures(args: argparse.Namespace, endpoint: str) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    noop = loop.run_until_complete(build_runtime(NOOP_HANDLER))
    sd = loop.run_until_complete(build_runtime(stackdriver_handler_doc(endpoint)))
    bags = make_bags(args.bags)
    noop_runs, sd_runs = [], []
    for _ in range(args.repeat):  # interleaved, so drift in the machine hits both alike
        started = time.process_time()
        mixer_path(noop, bags, args.batch)
        noop_runs.append(time.process_time() - started)
        sd_runs.append(stackdriver_path(loop, sd, bags, args.batch))
    handler = sd.snapshot.slots["prometheus.handler.istio-system"].handler
    assert isinstance(handler, StackdriverHandler)
    queue = handler.queue
    series = sum(len(s.series) for s in handler.stores.values())
    noop_best, sd_best = min(noop_runs), min(sd_runs)
    print(f"bags: {args.bags}, batch: {args.batch}, best of {args.repeat}; {series} series, "
          f"{queue.sent} points written to the fake over the runs "
          f"(offered {queue.offered}, dropped {sum(queue.dropped.values())})")
    print(f"default config -> noop handler:         {args.bags / noop_best:12,.0f} bags/s")
    print(f"default config -> stackdriver handler:  {args.bags / sd_best:12,.0f} bags/s (one push per run included)")
    print(f"cost ratio stackdriver/noop: {sd_best / noop_best:.2f}x (goal <= 1.5x)")
    loop.run_until_complete(noop.close())
    loop.run_until_complete(sd.close())
    loop.close()


def push_figures(args: argparse.Namespace, endpoint: str) -> None:
    """One push of ``--series`` series of the Istio mix: collecting (building the protobufs) and
    sending; and the same TimeSeries built through the library's proto-plus types, for reference."""
    adapter = StackdriverAdapter()
    doc = yaml.safe_load(stackdriver_handler_doc(endpoint))
    params = adapter.parse_params(doc["spec"]["params"])
    labels = tuple(f"label_{i}" for i in range(21))
    schemas = {m.instance_name: InstanceSchema(m.instance_name, "metric", labels) for m in params.metrics}
    handler = adapter.build(params, Env("bench", logging.getLogger("bench"), SelfMetrics()), schemas)
    assert isinstance(handler, StackdriverHandler)
    per_metric = args.series // 4

    def feed() -> None:
        for instance, value in (("requestcount", 1), ("requestduration", 20.0), ("requestsize", 300), ("responsesize", 900)):
            name = f"{instance}.instance.istio-system"
            handler.handle_metric([MetricInstance(name, value, (f"workload-{i}",) + ("unknown",) * 20) for i in range(per_metric)])

    loop = asyncio.new_event_loop()
    loop.run_until_complete(handler.start())
    points: list[Any] = []

    async def push() -> tuple[float, float]:
        points.clear()
        started = time.process_time()
        for store in handler.stores.values():
            store.collect(time.time(), points)
        collected = time.process_time() - started
        handler.queue.offer(points)
        await handler.queue.flush()
        return collected, time.process_time() - started

    feed()
    first_collect, first_push = loop.run_until_complete(push())
    feed()
    time.sleep(0.01)  # a later end time: points of a series are written in order
    collect, pushed = loop.run_until_complete(push())

    started = time.process_time()
    plus = [
        metric_types.TimeSeries(
            metric={"type": p.metric.type, "labels": dict(p.metric.labels)},
            resource={"type": p.resource.type, "labels": dict(p.resource.labels)},
            metric_kind=p.metric_kind, value_type=p.value_type,
            points=[metric_types.Point.wrap(p.points[0])],
        )
        for p in points
    ]
    reference = time.process_time() - started
    queue = handler.queue
    print(f"a push of {len(points):,} series (4 metrics, 21 labels; 3 of them distributions of 22 buckets), "
          f"{len(points) // 200 + (len(points) % 200 > 0)} requests: first (builds labels and resources) collect "
          f"{first_collect * 1000:.0f} ms, collect + send {first_push * 1000:.0f} ms; later pushes collect "
          f"{collect * 1000:.0f} ms, collect + send {pushed * 1000:.0f} ms (sent {queue.sent:,}, dropped "
          f"{sum(queue.dropped.values())}); the same TimeSeries built through proto-plus types: {reference * 1000:.0f} ms")
    loop.run_until_complete(handler.close())
    loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bags", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--series", type=int, default=10_000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, {cpu_model()}, "
          f"Python {platform.python_version()}, pinned to 1 core (the fake MetricService runs in its own process)")
    with fake_service() as endpoint:
        dispatch_figures(args, endpoint)
    with fake_service() as endpoint:  # a fresh one: the push figures use other labels for the same types
        push_figures(args, endpoint)


if __name__ == "__main__":
    main()
