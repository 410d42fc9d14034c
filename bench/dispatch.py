"""Bags/s through Istio 1.4's standard metric config into the no-op handler, on one core.

Baseline, measured in the same run: a hand-written loop that builds the same four label tuples
(the same dict lookups and defaults, no rules, no expressions). The ratio is the price of the
general machinery; the absolute rate is the figure the issue's goal (100,000 bags/s) is about.

    .venv/bin/python bench/dispatch.py [--bags 200000] [--batch 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import random
import time
from typing import Any

from mixer.config import DEFAULT_CONFIG_DIR, compile_config
from mixer.registry import AdapterRegistry
from mixer.runtime import Runtime

NOOP_HANDLER = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: prometheus, namespace: istio-system}
spec: {compiledAdapter: noop}
"""


def make_bags(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Envoy-like HTTP bags over a small mesh: 12 workloads, a few paths and codes."""
    rng = random.Random(seed)
    workloads = [(f"svc{i}", f"v{i % 2 + 1}") for i in range(12)]
    bags = []
    for _ in range(count):
        (src, src_v), (dst, dst_v) = rng.sample(workloads, 2)
        bags.append(
            {
                "context.protocol": "http",
                "context.reporter.kind": rng.choice(("inbound", "outbound")),
                "source.workload.name": f"{src}-{src_v}",
                "source.workload.namespace": "default",
                "source.principal": f"spiffe://cluster.local/ns/default/sa/{src}",
                "source.labels": {"app": src, "version": src_v},
                "destination.workload.name": f"{dst}-{dst_v}",
                "destination.workload.namespace": "default",
                "destination.labels": {"app": dst, "version": dst_v},
                "destination.service.host": f"{dst}.default.svc.cluster.local",
                "destination.service.name": dst,
                "destination.service.namespace": "default",
                "request.host": f"{dst}:8080",
                "request.useragent": "curl/8.0",
                "request.size": rng.randint(0, 2000),
                "response.size": rng.randint(0, 20000),
                "response.code": rng.choice((200, 200, 200, 404, 503)),
                "response.duration": dt.timedelta(microseconds=rng.randint(100, 300000)),
                "connection.mtls": True,
            }
        )
    return bags


def baseline(bags: list[dict[str, Any]], batch: int) -> float:
    """Build the same 4 x 21 label tuples by hand; returns seconds."""
    started = time.perf_counter()
    for start in range(0, len(bags), batch):
        out: list[tuple[Any, ...]] = []
        for bag in bags[start : start + batch]:
            get = bag.get
            if get("context.protocol") not in ("http", "grpc"):
                continue
            outbound = get("context.reporter.kind", "inbound") == "outbound"
            src_labels = get("source.labels", {})
            dst_labels = get("destination.labels", {})
            labels = (
                "source" if outbound else "destination",
                get("source.workload.name", "unknown"),
                get("source.workload.namespace", "unknown"),
                get("source.principal", "unknown"),
                src_labels.get("app", "unknown"),
                src_labels.get("version", "unknown"),
                get("destination.workload.name", "unknown"),
                get("destination.workload.namespace", "unknown"),
                get("destination.principal", "unknown"),
                dst_labels.get("app", "unknown"),
                dst_labels.get("version", "unknown"),
                get("destination.service.host", "unknown"),
                get("destination.service.name", "unknown"),
                get("destination.service.namespace", "unknown"),
                get("api.protocol", get("context.protocol", "unknown")),
                get("response.code", 200),
                get("response.grpc_status", ""),
                get("context.proxy_error_code", "-"),
                get("rbac.permissive.response_code", "none"),
                get("rbac.permissive.effective_policy_id", "none"),
                "unknown" if outbound else ("mutual_tls" if get("connection.mtls", False) else "none"),
            )
            out.append((1, labels))
            out.append((get("response.duration", dt.timedelta(0)), labels))
            out.append((get("request.size", 0), labels))
            out.append((get("response.size", 0), labels))
    return time.perf_counter() - started


def mixer_path(runtime: Runtime, bags: list[dict[str, Any]], batch: int) -> tuple[float, int]:
    started = time.perf_counter()
    instances = 0
    for start in range(0, len(bags), batch):
        instances += runtime.report(bags[start : start + batch], "bench")
    return time.perf_counter() - started, instances


async def build_runtime() -> Runtime:
    telemetry = DEFAULT_CONFIG_DIR / "istio-telemetry.yaml"
    config = compile_config(
        [(str(telemetry), telemetry.read_text()), ("noop-handler.yaml", NOOP_HANDLER)], AdapterRegistry()
    )
    runtime = Runtime()
    await runtime.apply(config)
    return runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bags", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the goal says
    runtime = asyncio.run(build_runtime())
    bags = make_bags(args.bags)
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}, pinned to 1 core")
    print(f"bags: {args.bags}, batch: {args.batch}, best of {args.repeat}")
    base = min(baseline(bags, args.batch) for _ in range(args.repeat))
    runs = [mixer_path(runtime, bags, args.batch) for _ in range(args.repeat)]
    elapsed = min(r[0] for r in runs)
    assert runs[0][1] == 4 * args.bags, f"expected 4 instances per bag, got {runs[0][1]}"
    print(f"baseline (hand-built label tuples): {args.bags / base:12,.0f} bags/s")
    print(f"mixer (rules + 4 instances, noop):  {args.bags / elapsed:12,.0f} bags/s")
    print(f"cost ratio mixer/baseline: {elapsed / base:.2f}x")


if __name__ == "__main__":
    main()
