"""The prometheus adapter's cost: bags/s through Istio's default config into it against the no-op
handler in the same run, on one core; and the time to scrape 100,000 active series.

    .venv/bin/python bench/prometheus.py [--bags 200000] [--batch 100] [--repeat 3] [--series 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dispatch import NOOP_HANDLER, make_bags, mixer_path  # noqa: E402 - the sibling bench's bags

from adapters.prometheus import PrometheusAdapter, PrometheusHandler, StoreCollector  # noqa: E402
from mixer.config import DEFAULT_CONFIG_DIR, compile_config  # noqa: E402
from mixer.registry import AdapterRegistry  # noqa: E402
from mixer.runtime import Runtime  # noqa: E402
from mixer.sdk import Env, InstanceSchema, MetricInstance  # noqa: E402
from mixer.selfmetrics import SelfMetrics  # noqa: E402

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def prometheus_handler_doc(**params: Any) -> str:
    doc = yaml.safe_load((DEFAULT_CONFIG_DIR / "prometheus.yaml").read_text())
    doc["spec"]["params"].update(params)
    return yaml.safe_dump(doc)


async def build_runtime(handler_doc: str) -> Runtime:
    telemetry = DEFAULT_CONFIG_DIR / "istio-telemetry.yaml"
    config = compile_config(
        [(str(telemetry), telemetry.read_text()), ("handler.yaml", handler_doc)], AdapterRegistry()
    )
    runtime = Runtime()
    await runtime.apply(config)  # the prometheus handler listens on 127.0.0.1:0 meanwhile
    return runtime


def dispatch_figures(args: argparse.Namespace) -> None:
    loop = asyncio.new_event_loop()
    noop = loop.run_until_complete(build_runtime(NOOP_HANDLER))
    prom = loop.run_until_complete(build_runtime(prometheus_handler_doc(address="127.0.0.1:0")))
    bags = make_bags(args.bags)
    noop_runs, prom_runs = [], []
    for _ in range(args.repeat):  # interleaved, so drift in the machine hits both alike
        noop_runs.append(mixer_path(noop, bags, args.batch)[0])
        prom_runs.append(mixer_path(prom, bags, args.batch)[0])
    series = sum(len(s.series) for s in prom.snapshot.slots["prometheus.handler.istio-system"].handler.stores.values())  # type: ignore[attr-defined]
    noop_best, prom_best = min(noop_runs), min(prom_runs)
    print(f"bags: {args.bags}, batch: {args.batch}, best of {args.repeat}; {series} label sets in the adapter")
    print(f"default config -> noop handler:        {args.bags / noop_best:12,.0f} bags/s")
    print(f"default config -> prometheus handler:  {args.bags / prom_best:12,.0f} bags/s")
    print(f"cost ratio prometheus/noop: {prom_best / noop_best:.2f}x (goal <= 1.5x)")
    loop.run_until_complete(noop.close())
    loop.run_until_complete(prom.close())
    loop.close()


def handler_with(params: dict[str, Any]) -> PrometheusHandler:
    adapter = PrometheusAdapter()
    parsed = adapter.parse_params(params)
    schemas = {m.instance_name: InstanceSchema(m.instance_name, "metric", m.label_names) for m in parsed.metrics}
    env = Env("prometheus.istio-system", logging.getLogger("bench"), SelfMetrics())
    handler = adapter.build(parsed, env, schemas)
    assert isinstance(handler, PrometheusHandler)
    return handler


def fill(handler: PrometheusHandler, instance: str, label_sets: int, value: Any) -> None:
    labels = handler.stores[instance].info.label_names
    batch = []
    for i in range(label_sets):
        # Istio-like values: mostly shared strings, the workload pair and code varying
        dims = tuple(f"workload-{i}" if name == "source_workload" else
                     f"svc-{i % 97}" if name.startswith("destination_") else
                     str(200 + i % 5) if name == "response_code" else "unknown" for name in labels)
        batch.append(MetricInstance(instance, value, dims))
    handler.handle_metric(batch)


def time_scrape(handler: PrometheusHandler, accept: str, repeat: int) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        render, _content_type = handler.scrape(accept)  # snapshot, as on the loop
        body = render()  # formatting, as in the worker thread
        best = min(best, time.perf_counter() - started)
        size = len(body)
    return best, size


def scrape_figures(args: argparse.Namespace) -> None:
    params = yaml.safe_load((DEFAULT_CONFIG_DIR / "prometheus.yaml").read_text())["spec"]["params"]
    params["max_series_per_metric"] = args.series * 2

    counters = handler_with(params)
    fill(counters, "requestcount.instance.istio-system", args.series, 1)
    # The Istio mix: per label set 1 counter + 3 histograms (12/10/10 buckets + sum + count) = 39 series.
    mixed = handler_with(params)
    sets = args.series // 39
    for instance, value in (("requestcount", 1), ("requestduration", 0.02), ("requestsize", 300), ("responsesize", 900)):
        fill(mixed, f"{instance}.instance.istio-system", sets, value)

    for title, handler, series in ((f"{args.series:,} counter series (istio_requests_total, 21 labels)", counters, args.series),
                                   (f"{sets:,} label sets x 4 HTTP metrics = {sets * 39:,} series", mixed, sets * 39)):
        text, text_bytes = time_scrape(handler, "", args.repeat)
        om, _ = time_scrape(handler, OPENMETRICS, args.repeat)
        registry = CollectorRegistry()
        registry.register(StoreCollector(lambda h=handler: list(h.stores.values())))
        started = time.perf_counter()
        generate_latest(registry)
        reference = time.perf_counter() - started
        print(f"scrape of {title}: text {text:.3f} s ({text_bytes / 1e6:.1f} MB), OpenMetrics {om:.3f} s; "
              f"prometheus_client's own formatting of the same: {reference:.3f} s")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bags", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--series", type=int, default=100_000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, {cpu_model()}, "
          f"Python {platform.python_version()}, pinned to 1 core")
    dispatch_figures(args)
    scrape_figures(args)


if __name__ == "__main__":
    main()
