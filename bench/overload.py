"""Overload at the front doors: offer 10x the measured report capacity for 60 s and watch what holds.

One ``mixer serve`` on the default config (Istio's standard metrics into the prometheus handler),
default limits unless given. Phases, in one run:

1. capacity: closed loop, ``--clients`` concurrent HTTP reports of ``--bags`` bags each, 10 s: the
   reports/s the mixer sustains (C). ext_authz checks are probed throughout from a process of their
   own (``--check-rate``/s, timeout ``--check-timeout``, the sidecar's check timeout): their latency
   idle and at capacity is the baseline.
2. overload: open loop, ``--factor`` x C reports/s for ``--duration`` s (each sent on schedule
   whether or not earlier ones were answered); the mixer's RSS sampled every 0.5 s; answers
   counted by status; checks probed.
3. recovery: the closed loop of phase 1 again, 10 s: capacity back?
4. maximal reports: 2 clients send reports of the largest size the limits allow
   (``max_bags_per_request`` bags within ``max_body_bytes``) back to back for 10 s; checks probed.

At the end the mixer's ``mixer_shed_requests_total`` is compared with the 429s the clients saw.

    .venv/bin/python bench/overload.py [--duration 60] [--factor 10] [--bags 200] [--append]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
from envoy.service.auth.v3 import external_auth_pb2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.dispatch import make_bags  # noqa: E402
from mixer.attributes import ValueType, value_to_json  # noqa: E402
from mixer.config import DEFAULT_CONFIG_DIR  # noqa: E402
from mixer.frontdoors import Limits  # noqa: E402
from mixer.processes import free_port, start, stop, wait_for_port  # noqa: E402

CHECK = "/envoy.service.auth.v3.Authorization/Check"


def report_body(bags: int, seed: int) -> bytes:
    raw = make_bags(bags, seed)
    return orjson.dumps({"attributes": [{k: value_to_json(ValueType.ANY, v) for k, v in bag.items()} for bag in raw]})


def check_request() -> bytes:
    request = external_auth_pb2.CheckRequest()
    attrs = request.attributes
    attrs.source.address.socket_address.address = "10.0.0.1"
    attrs.destination.address.socket_address.address = "10.0.0.2"
    attrs.destination.labels["WORKLOAD_NAME"] = "reviews-v1"
    http = attrs.request.http
    http.method, http.path, http.host = "GET", "/reviews/1", "reviews:9080"
    http.headers.update({":path": "/reviews/1", ":method": "GET", "user-agent": "bench"})
    data: bytes = request.SerializeToString()
    return data


def rss_margin(limits: Limits) -> float:
    """Bytes README's Limits section allows above idle + max_inflight_bytes: each open HTTP
    connection's read buffer (aiohttp stops reading at 2 x 64 KiB) and the objects of the reports
    being decoded (about 10x a body's bytes)."""
    return limits.max_connections * 128 * 1024 + limits.concurrent_reports * 10 * limits.max_body_bytes


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Probe:
    """ext_authz checks at a fixed rate; latencies of the answered ones, and the failed ones."""

    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        if not self.latencies:
            return f"no check answered; failures {dict(self.failures)}"
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        failures = f", failed {sum(self.failures.values())} ({dict(self.failures)})" if self.failures else ", none failed"
        return (f"{len(ordered)} checks: p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
                f"max {ordered[-1] * 1000:.1f} ms{failures}")


async def probe_checks(grpc_port: int, rate: float, timeout: float, seconds: float, probe: Probe) -> None:
    """Checks from a process of their own: the load generator's busy loop must not delay them."""
    loop = asyncio.get_running_loop()
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        latencies, failures = await loop.run_in_executor(pool, _probe_process, grpc_port, rate, timeout, seconds)
    probe.latencies.extend(latencies)
    probe.failures.update(failures)


def _probe_process(grpc_port: int, rate: float, timeout: float, seconds: float) -> tuple[list[float], dict[str, int]]:
    probe = Probe()

    async def run() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            await channel.channel_ready()
            await _probe_loop(channel, rate, timeout, asyncio.get_running_loop().time() + seconds, probe)

    asyncio.run(run())
    return probe.latencies, dict(probe.failures)


async def _probe_loop(channel: grpc.aio.Channel, rate: float, timeout: float, until: float, probe: Probe) -> None:
    call = channel.unary_unary(CHECK)
    body = check_request()
    loop = asyncio.get_running_loop()

    async def one() -> None:
        started = loop.time()
        try:
            await call(body, timeout=timeout)
            probe.latencies.append(loop.time() - started)
        except grpc.aio.AioRpcError as err:
            probe.failures[err.code().name] += 1

    tasks = []
    next_at = loop.time()
    while loop.time() < until:
        tasks.append(asyncio.create_task(one()))
        next_at += 1 / rate
        await asyncio.sleep(max(next_at - loop.time(), 0))
    await asyncio.gather(*tasks)


async def post(session: aiohttp.ClientSession, url: str, body: bytes, statuses: Counter[str]) -> None:
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"},
                                timeout=aiohttp.ClientTimeout(total=30)) as reply:
            await reply.read()
            statuses[str(reply.status)] += 1
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        statuses[type(exc).__name__] += 1


async def closed_loop(url: str, bodies: list[bytes], clients: int, seconds: float) -> tuple[float, Counter[str]]:
    """``clients`` back-to-back posters for ``seconds``: reports answered 200 per second."""
    statuses: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def client(n: int) -> None:
            i = n
            while loop.time() < until:
                await post(session, url, bodies[i % len(bodies)], statuses)
                i += clients

        started = loop.time()
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed = loop.time() - started
    return statuses["200"] / elapsed, statuses


async def open_loop(url: str, bodies: list[bytes], rate: float, seconds: float, cap: int) -> tuple[Counter[str], int, float]:
    """A report every 1/rate s for ``seconds`` whatever the answers; returns statuses, how many could
    not be sent because ``cap`` were already waiting here (the generator's own bound), and the rate
    actually sent."""
    statuses: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    unsent = sent = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as session:
        started = next_at = loop.time()
        until = started + seconds
        while loop.time() < until:
            now = loop.time()
            while next_at <= now:
                if len(pending) >= cap:
                    unsent += 1
                else:
                    task = asyncio.create_task(post(session, url, bodies[sent % len(bodies)], statuses))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    sent += 1
                next_at += 1 / rate
            await asyncio.sleep(max(min(next_at - loop.time(), 0.01), 0))
        elapsed = loop.time() - started
        await asyncio.gather(*pending)
    return statuses, unsent, sent / elapsed


async def sample_rss(pid: int, until: float, samples: list[float]) -> None:
    while asyncio.get_running_loop().time() < until:
        samples.append(rss_mib(pid))
        await asyncio.sleep(0.5)


def shed_total(metrics_text: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics_text.splitlines()
               if line.startswith("mixer_shed_requests_total{"))


async def run(args: argparse.Namespace, pid: int, http_port: int, grpc_port: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{http_port}/v1/report"
    bodies = [report_body(args.bags, seed) for seed in range(8)]
    limits = Limits(max_inflight_bytes=args.max_inflight_bytes)
    per_bag = len(bodies[0]) / args.bags  # the largest report both limits allow: bags and body bytes
    maximal_bags = min(limits.max_bags_per_request, int(limits.max_body_bytes / per_bag * 0.98))
    maximal = [report_body(maximal_bags, seed) for seed in range(2)]
    loop = asyncio.get_running_loop()
    out: dict[str, Any] = {"body_kib": len(bodies[0]) / 1024, "maximal_mib": len(maximal[0]) / 2**20,
                           "maximal_bags": maximal_bags}
    idle = Probe()
    await probe_checks(grpc_port, args.check_rate, args.check_timeout, 3, idle)
    out["idle_checks"] = idle.summary()
    out["idle_rss"] = rss_mib(pid)

    at_capacity = Probe()
    checks = asyncio.create_task(probe_checks(grpc_port, args.check_rate, args.check_timeout, 10,
                                              at_capacity))
    capacity, _ = await closed_loop(url, bodies, args.clients, 10)
    await checks
    out["capacity"], out["capacity_checks"] = capacity, at_capacity.summary()

    rate = args.factor * capacity
    overload = Probe()
    rss: list[float] = []
    until = loop.time() + args.duration
    checks = asyncio.create_task(probe_checks(grpc_port, args.check_rate, args.check_timeout, args.duration,
                                              overload))
    sampler = asyncio.create_task(sample_rss(pid, until + 2, rss))
    statuses, unsent, sent_rate = await open_loop(url, bodies, rate, args.duration, args.generator_cap)
    await checks
    await sampler
    out.update(offered=rate, sent_rate=sent_rate, statuses=dict(statuses), unsent=unsent,
               overload_checks=overload.summary(), rss_peak=max(rss), rss_end=rss[-1])

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{http_port}/metrics") as reply:
            out["shed_counted"] = shed_total(await reply.text())

    after = Probe()
    checks = asyncio.create_task(probe_checks(grpc_port, args.check_rate, args.check_timeout, 10, after))
    out["recovered"], _ = await closed_loop(url, bodies, args.clients, 10)
    await checks
    out["recovered_checks"] = after.summary()
    out["rss_after_recovery"] = rss_mib(pid)

    during_max = Probe()
    rss = []
    checks = asyncio.create_task(probe_checks(grpc_port, args.check_rate, args.check_timeout, 10,
                                              during_max))
    sampler = asyncio.create_task(sample_rss(pid, loop.time() + 12, rss))
    maximal_rate, maximal_statuses = await closed_loop(url, maximal, 2, 10)
    await checks
    await sampler
    out["maximal"] = f"{maximal_rate:.1f} maximal reports/s answered ({dict(maximal_statuses)})"
    out["maximal_checks"] = during_max.summary()
    out["maximal_rss_peak"] = max(rss)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--factor", type=float, default=10.0)
    parser.add_argument("--bags", type=int, default=200, help="bags per report in the capacity and overload phases")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--check-rate", type=float, default=50.0)
    parser.add_argument("--check-timeout", type=float, default=0.5)
    parser.add_argument("--generator-cap", type=int, default=4000, help="reports waiting here at most")
    parser.add_argument("--max-inflight-bytes", type=int, default=Limits().max_inflight_bytes)
    parser.add_argument("--max-connections", type=int, default=Limits().max_connections)
    parser.add_argument("--append", action="store_true", help="append the result row to BENCHMARKS.md")
    args = parser.parse_args()

    http_port, grpc_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as folder:
        proc = start([sys.executable, "-m", "mixer.cli", "serve", "--config", str(DEFAULT_CONFIG_DIR),
                      "--port", str(http_port), "--grpc-port", str(grpc_port), "--log-level", "WARNING",
                      "--metrics-address", f"127.0.0.1:{free_port()}", "--watch-interval", "0",
                      "--max-inflight-bytes", str(args.max_inflight_bytes),
                      "--max-connections", str(args.max_connections)],
                     log_path=os.path.join(folder, "mixer.log"), cwd=str(ROOT))
        try:
            wait_for_port(http_port, timeout=30, proc=proc)
            wait_for_port(grpc_port, timeout=30, proc=proc)
            out = asyncio.run(run(args, proc.pid, http_port, grpc_port))
            alive = proc.poll() is None
        finally:
            stop(proc)
    limits = Limits(max_inflight_bytes=args.max_inflight_bytes, max_connections=args.max_connections)
    bound = out["idle_rss"] + limits.max_inflight_bytes / 2**20
    margin = rss_margin(limits) / 2**20
    client_429 = out["statuses"].get("429", 0)
    machine = f"{platform.machine()}, {os.cpu_count()} cpus (shared by client and mixer), Python {platform.python_version()}"
    print(f"machine: {machine}")
    print(f"reports of {args.bags} bags ({out['body_kib']:.0f} KiB); maximal report {out['maximal_bags']} bags "
          f"({out['maximal_mib']:.1f} MiB)")
    print(f"idle: RSS {out['idle_rss']:.0f} MiB; {out['idle_checks']}")
    print(f"capacity (closed loop, {args.clients} clients): {out['capacity']:.1f} reports/s; {out['capacity_checks']}")
    print(f"overload: offered {out['offered']:.0f} reports/s ({args.factor:g}x) for {args.duration:g} s, sent "
          f"{out['sent_rate']:.0f}/s (unsent, generator cap: {out['unsent']}); answers {out['statuses']}")
    print(f"overload: RSS peak {out['rss_peak']:.0f} MiB, end {out['rss_end']:.0f} MiB "
          f"(idle + max_inflight_bytes = {bound:.0f} MiB, + the README's margin {margin:.0f} MiB = "
          f"{bound + margin:.0f} MiB); {out['overload_checks']}")
    print(f"shed: the mixer counted {out['shed_counted']:.0f}, the clients saw {client_429} x 429")
    print(f"recovery: {out['recovered']:.1f} reports/s ({out['recovered'] / out['capacity']:.0%} of capacity); "
          f"{out['recovered_checks']}")
    print(f"maximal reports (2 clients back to back, after the rest): {out['maximal']}; {out['maximal_checks']}; "
          f"RSS {out['rss_after_recovery']:.0f} MiB before, peak {out['maximal_rss_peak']:.0f} MiB")
    print(f"mixer alive after the run: {alive}; load average {os.getloadavg()[0]:.1f} (other work shares the cpus)")
    if args.append:
        row = (f"| {time.strftime('%Y-%m-%d')} | {machine} | {args.bags} bags | {out['capacity']:.0f}/s | "
               f"{out['offered']:.0f}/s offered, {out['sent_rate']:.0f}/s sent | {out['statuses']} | "
               f"{out['shed_counted']:.0f} / {client_429} | {out['rss_peak']:.0f} MiB (bound {bound + margin:.0f}) | "
               f"{out['capacity_checks']} | {out['overload_checks']} | {out['maximal_checks']} | "
               f"{out['recovered'] / out['capacity']:.0%} |\n")
        with (ROOT / "BENCHMARKS.md").open("a") as f:
            f.write(row)


if __name__ == "__main__":
    main()
