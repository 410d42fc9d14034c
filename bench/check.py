"""The check path: rbac + memquota through the native gRPC Check and through Envoy's ext_authz, each
against two allow-all baselines in the same run (the mixer with an allow-all handler, and a bare
grpc.aio server); the check cache (hit vs miss); redisquota against a raw Redis INCR round trip.
Loopback only; every server is a child process stopped by its PID.

    .venv/bin/python bench/check.py [--duration 2] [--rounds 8] [--connections 8] [--no-pin] [--append]

Baselines, measured in the same run:
- native gRPC: ``mixer serve`` checking rbac and allocating a memquota quota per call (check cache
  on, and off) against two allow-all servers: ``mixer serve`` whose one rule sends a ``checknothing``
  instance to the ``noop`` handler (the allow-all handler: the same front door, runtime and one
  handler call per check, with the check cache off so every check really calls it; the quota the
  request names is granted in full, no rule building it), which isolates what rbac + memquota cost;
  and a bare grpc.aio server answering ``mixer.v1.Mixer/Check`` with a constant allow (no decoding,
  no runtime), which shows what the whole mixer costs;
- Envoy ext_authz: the same Envoy bootstrap pointed at a bare grpc.aio allow server, at the mixer
  with the allow-all handler, or at the mixer with rbac + memquota (same ``mixer serve`` flags);
- cache: ``Runtime.check`` in process, the same bags answered from the cache or by the handlers;
- redisquota: one ``allocate_quota`` (an EVALSHA of the window script) against one ``INCR`` on the
  same client, both through redis.asyncio against the same redis-server.

How it keeps a shared machine's noise out: baseline and subject are measured by the same client in
short interleaved rounds whose order alternates (A B, B A, ...), so drift hits both alike; each round
gives a ratio, and the median ratio is reported with its spread (min to max over the rounds). Besides
wall figures (checks/s, p50, p99) each server's CPU time per check is read from /proc
(utime + stime of all its threads), which other jobs' load disturbs far less. With two or more
CPUs the servers are pinned to the last one and the load generator, Envoy and wrk to the first, so
client and server do not take turns on one core (``--no-pin`` leaves scheduling alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import envoy_check  # noqa: E402 - the sibling benchmark's Envoy bootstrap and load generator
from procstat import cpu_seconds, pin_threads  # noqa: E402

from mixer.processes import free_port, start, stop, wait_for_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HEADER = "apiVersion: config.istio.io/v1alpha2\n"
SERVICE_HOST = "b.default.svc.cluster.local"

POLICY = HEADER + """kind: handler
metadata: {name: rbac, namespace: istio-system}
spec: {compiledAdapter: rbac}
---
""" + HEADER + """kind: instance
metadata: {name: requestcontext, namespace: istio-system}
spec:
  compiledTemplate: authorization
  params:
    subject: {user: source.workload.name | ""}
    action:
      namespace: destination.service.namespace | "default"
      service: destination.service.host | ""
      method: request.method | ""
      path: request.path | ""
---
""" + HEADER + """kind: rule
metadata: {name: rbac, namespace: istio-system}
spec:
  actions: [{handler: rbac, instances: [requestcontext]}]
---
""" + HEADER + """kind: handler
metadata: {name: quota, namespace: istio-system}
spec:
  compiledAdapter: memquota
  params: {quotas: [{name: requestcount, maxAmount: 1000000000, validDuration: 1h}]}
---
""" + HEADER + """kind: instance
metadata: {name: requestcount, namespace: istio-system}
spec:
  compiledTemplate: quota
  params: {dimensions: {destination: destination.service.host | "unknown"}}
---
""" + HEADER + """kind: rule
metadata: {name: quota, namespace: istio-system}
spec:
  actions: [{handler: quota, instances: [requestcount]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: b-reader, namespace: default}
spec:
  rules: [{services: [b.default.svc.cluster.local], methods: [GET], paths: ["/bench*"]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: bind-b-reader, namespace: default}
spec:
  subjects: [{user: a-v1}]
  roleRef: {kind: ServiceRole, name: b-reader}
"""

# The allow-all handler: one check rule, no match, calling the noop adapter (the registry's cheapest
# allow) with a checknothing instance (no expressions to evaluate).
ALLOW_ALL = HEADER + """kind: handler
metadata: {name: allowall, namespace: istio-system}
spec: {compiledAdapter: noop}
---
""" + HEADER + """kind: instance
metadata: {name: nothing, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
""" + HEADER + """kind: rule
metadata: {name: allowall, namespace: istio-system}
spec:
  actions: [{handler: allowall, instances: [nothing]}]
"""

ALLOW_JSON = orjson.dumps({"status": {"code": 0, "message": ""}, "valid_duration": "60s",
                           "valid_use_count": 10000, "quotas": {}})


def percentiles(latencies_ms: list[float], seconds: float) -> dict[str, float]:
    latencies_ms.sort()
    return {"rps": len(latencies_ms) / seconds, "p50": latencies_ms[len(latencies_ms) // 2],
            "p99": latencies_ms[int(len(latencies_ms) * 0.99)]}


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


# -- pinning -----------------------------------------------------------------------------------


class Pinning:
    """Servers on the last CPU, this process (the load generator, and Envoy and wrk, its children)
    on the first; nothing when off or on one CPU."""

    def __init__(self, enabled: bool) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        self.enabled = enabled and len(cpus) >= 2
        self.client, self.server = {cpus[0]}, {cpus[-1]}
        if self.enabled:
            os.sched_setaffinity(0, self.client)

    def serve(self, pid: int) -> None:
        """Move every thread of ``pid`` (a started server) to the server CPU."""
        if self.enabled:
            pin_threads(pid, self.server)

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Every CPU for this process and what it starts meanwhile: with Envoy, wrk and the server
        three busy processes share two CPUs, and pinning two of them to one starves them."""
        if not self.enabled:
            yield
            return
        os.sched_setaffinity(0, self.client | self.server | set(range(os.cpu_count() or 1)))
        try:
            yield
        finally:
            os.sched_setaffinity(0, self.client)

    def describe(self) -> str:
        if not self.enabled:
            return "not pinned"
        return (f"native gRPC and Redis: servers pinned to cpu {min(self.server)}, the client to cpu "
                f"{min(self.client)}; Envoy part not pinned")


def interleave(measure: dict[str, Callable[[], dict[str, float]]], rounds: int) -> dict[str, list[dict[str, float]]]:
    """``rounds`` rounds of every measurement, in an order that reverses each round."""
    names = list(measure)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            runs[name].append(measure[name]())
    return runs


def ratios(subject: list[dict[str, float]], baseline: list[dict[str, float]]) -> dict[str, tuple[float, float, float]]:
    """Per round, what the subject costs over the baseline (>1: dearer): checks/s as baseline over
    subject, latencies and CPU per check as subject over baseline; median, min and max over rounds."""
    out: dict[str, tuple[float, float, float]] = {}
    for key in ("rps", "p50", "p99", "cpu_us"):
        if key not in subject[0] or key not in baseline[0]:
            continue
        each = [(b[key] / s[key]) if key == "rps" else (s[key] / b[key]) for s, b in zip(subject, baseline)]
        out[key] = (statistics.median(each), min(each), max(each))
    return out


# -- the bare native Check server ---------------------------------------------------------------


def serve_bare_native(port: int) -> None:
    import grpc

    async def check(raw: bytes, context: Any) -> bytes:
        return ALLOW_JSON

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "mixer.v1.Mixer", {"Check": grpc.unary_unary_rpc_method_handler(check)})])
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def native_request() -> bytes:
    return orjson.dumps({
        "attributes": {
            "source.workload.name": "a-v1", "destination.service.host": SERVICE_HOST,
            "destination.service.namespace": "default", "request.method": "GET", "request.path": "/bench",
            "request.headers": {"x-request-id": str(uuid.uuid4()), "user-agent": "bench"},
        },
        "quotas": {"requestcount": {"amount": 1}},
    })


def with_server_cpu(pid: int, load: Callable[[], dict[str, float]], count_key: str = "checks") -> dict[str, float]:
    """``load()``'s figures plus the server's CPU microseconds per check during it."""
    before = cpu_seconds(pid)
    figures = load()
    figures["cpu_us"] = (cpu_seconds(pid) - before) / max(figures[count_key], 1) * 1e6
    return figures


async def native_load(port: int, seconds: float, connections: int) -> dict[str, float]:
    import grpc

    requests = [native_request() for _ in range(1000)]  # distinct request ids, as real traffic has
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/mixer.v1.Mixer/Check")
        reply = orjson.loads(await call(requests[0]))
        assert reply["status"]["code"] == 0, reply
        deadline = time.monotonic() + seconds

        async def worker(offset: int) -> None:
            index = offset
            while time.monotonic() < deadline:
                started = time.perf_counter()
                await call(requests[index % len(requests)])
                latencies.append((time.perf_counter() - started) * 1e3)
                index += connections

        await asyncio.gather(*(worker(i) for i in range(connections)))
    return {**percentiles(latencies, seconds), "checks": float(len(latencies))}


def mixer_command(config: Path, grpc_port: int, *extra: str, http_port: int | None = None) -> list[str]:
    return [sys.executable, "-m", "mixer.cli", "serve", "--config", str(config), "--port",
            str(http_port or free_port()), "--grpc-port", str(grpc_port), "--watch-interval", "0",
            "--log-level", "WARNING", *extra]


def allow_all_server(workdir: Path, grpc_port: int, http_port: int, *extra: str) -> subprocess.Popen[bytes]:
    """``mixer serve`` with the allow-all handler, check cache off: every check calls the handler."""
    config = workdir / "allow-all.yaml"
    config.write_text(ALLOW_ALL)
    return start(mixer_command(config, grpc_port, "--check-cache-size", "0", *extra, http_port=http_port),
                 log_path=str(workdir / f"allow-all-{grpc_port}.log"), cwd=str(ROOT))


def assert_handler_called(http_port: int, checks: float) -> None:
    """The allow-all server's noop handler was called at least once per measured check (its
    ``mixer_dispatches_total``), so that baseline really went through the runtime and a handler."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    calls = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("mixer_dispatches_total{") and 'adapter="noop"' in line)
    assert calls >= checks, f"the allow-all handler was called {calls:.0f} times for {checks:.0f} checks"


def bench_native(args: argparse.Namespace, workdir: Path, pinning: Pinning) -> dict[str, list[dict[str, float]]]:
    config = workdir / "policy.yaml"
    config.write_text(POLICY)
    ports = {"bare": free_port(), "allowall": free_port(), "cached": free_port(), "uncached": free_port()}
    allow_all_http = free_port()
    procs = {
        "bare": start([sys.executable, str(Path(__file__).resolve()), "--bare-native", str(ports["bare"])],
                      log_path=str(workdir / "bare-native.log"), cwd=str(ROOT)),
        "allowall": allow_all_server(workdir, ports["allowall"], allow_all_http),
        "cached": start(mixer_command(config, ports["cached"]), log_path=str(workdir / "cached.log"), cwd=str(ROOT)),
        "uncached": start(mixer_command(config, ports["uncached"], "--check-cache-size", "0"),
                          log_path=str(workdir / "uncached.log"), cwd=str(ROOT)),
    }
    try:
        for name, port in ports.items():
            wait_for_port(port, 30, procs[name])
        for name, port in ports.items():  # warm up, then pin every thread the server has made by now
            asyncio.run(native_load(port, 1, args.connections))
            pinning.serve(procs[name].pid)

        def measure(name: str) -> Callable[[], dict[str, float]]:
            return lambda: with_server_cpu(procs[name].pid, lambda: asyncio.run(
                native_load(ports[name], args.duration, args.connections)))

        runs = interleave({name: measure(name) for name in ports}, args.rounds)
        assert_handler_called(allow_all_http, sum(run["checks"] for run in runs["allowall"]))
        return runs
    finally:
        for proc in procs.values():
            stop(proc)


def bench_envoy(args: argparse.Namespace, workdir: Path) -> dict[str, list[dict[str, float]]]:
    import yaml

    from proxy import EnvoyProcess

    config = workdir / "policy.yaml"
    config.write_text(POLICY)
    authz = {"bare": free_port(), "allowall": free_port(), "mixer": free_port()}
    flags = ("--trust-peer-headers", "--authz-quota", "requestcount")  # the same for both mixers
    allow_all_http = free_port()
    procs = {
        "bare": start([sys.executable, str(ROOT / "bench" / "envoy_check.py"), "--bare-server", str(authz["bare"])],
                      log_path=str(workdir / "bare-authz.log"), cwd=str(ROOT)),
        "allowall": allow_all_server(workdir, authz["allowall"], allow_all_http, *flags),
        "mixer": start(mixer_command(config, authz["mixer"], *flags),
                       log_path=str(workdir / "mixer-authz.log"), cwd=str(ROOT)),
    }
    envoys: dict[str, EnvoyProcess] = {}
    listen = {name: free_port() for name in authz}
    try:
        for name, port in authz.items():
            wait_for_port(port, 30, procs[name])
        for name in authz:
            path = workdir / f"envoy-{name}.yaml"
            path.write_text(yaml.safe_dump(envoy_check.check_only_bootstrap("b-v1", listen[name], authz[name])))
            envoys[name] = EnvoyProcess(path, log_path=workdir / f"envoy-{name}.log")
            envoys[name].start()
        for envoy in envoys.values():
            envoy.wait_ready()
        for name in authz:
            warm = envoy_check.load(listen[name], 1, args.connections)
            assert warm["non2xx"] == 0, f"{name}: {warm}"  # the policy allows a-v1 -> b GET /bench

        def measure(name: str) -> Callable[[], dict[str, float]]:
            def run() -> dict[str, float]:
                figures = envoy_check.load(listen[name], args.duration, args.connections)
                if figures["non2xx"]:  # a Check past its 0.5 s timeout is refused: counted, shown
                    print(f"  {name}: {figures['non2xx']:.0f} of {figures['requests']:.0f} requests not 200", flush=True)
                figures["checks"] = figures["requests"]  # one Check per request
                return figures
            return lambda: with_server_cpu(procs[name].pid, run)

        runs = interleave({name: measure(name) for name in authz}, args.rounds)
        assert_handler_called(allow_all_http, sum(run["checks"] for run in runs["allowall"]))
        return runs
    finally:
        for envoy in envoys.values():
            envoy.close()
        for proc in procs.values():
            stop(proc)


# -- the cache in process -----------------------------------------------------------------------


def bench_cache(checks: int, rounds: int) -> dict[str, list[dict[str, float]]]:
    """CPU microseconds per Runtime.check (no quota asked: the cached part), answered from the cache
    ("hit") or by rbac ("miss"); and per whole native Check in process (JSON in, rbac + a memquota
    allocation, JSON out: what the server does per call besides gRPC), cache on and off. Interleaved."""
    from mixer.attributes import bag_from_json
    from mixer.config import compile_config
    from mixer.frontdoors.native import check_response_json, parse_check
    from mixer.runtime import Runtime

    async def build(cache_size: int) -> tuple[Runtime, list[Any]]:
        runtime = Runtime(check_cache_size=cache_size)
        await runtime.apply(compile_config([("policy.yaml", POLICY)], runtime.registry))
        manifest = runtime.manifest
        bags = [bag_from_json(orjson.loads(native_request())["attributes"], manifest) for _ in range(1000)]
        for bag in bags[:10]:
            assert (await runtime.check(bag)).result.ok
        return runtime, bags

    loop = asyncio.new_event_loop()
    try:
        built = {"hit": loop.run_until_complete(build(10_000)), "miss": loop.run_until_complete(build(0))}
        requests = [native_request() for _ in range(1000)]

        def measure(name: str) -> Callable[[], dict[str, float]]:
            runtime, bags = built[name.removeprefix("native ")]

            async def run_checks() -> None:
                if name.startswith("native "):
                    manifest = runtime.manifest
                    for i in range(checks):
                        bag, quotas = parse_check(orjson.loads(requests[i % len(requests)]), manifest)
                        orjson.dumps(check_response_json(await runtime.check(bag, quotas, "native_grpc")))
                    return
                for i in range(checks):
                    await runtime.check(bags[i % len(bags)])

            def once() -> dict[str, float]:
                started = time.process_time()
                loop.run_until_complete(run_checks())
                return {"cpu_us": (time.process_time() - started) / checks * 1e6}
            return once

        runs = interleave({name: measure(name) for name in ("hit", "miss", "native hit", "native miss")}, rounds)
        hits = built["hit"][0].metrics.registry.get_sample_value("mixer_check_cache_total", {"result": "hit"})
        assert hits is not None and hits >= rounds * checks - 1
        for runtime, _ in built.values():
            loop.run_until_complete(runtime.close())
        return runs
    finally:
        loop.close()


# -- redisquota against INCR --------------------------------------------------------------------


async def _timed(op: Callable[[], Awaitable[Any]], count: int, concurrency: int, server_pid: int) -> dict[str, float]:
    """``count`` ops, ``concurrency`` in flight: wall figures, and CPU per op of this process (the
    client) and of the server."""
    latencies: list[float] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            started = time.perf_counter()
            await op()
            latencies.append((time.perf_counter() - started) * 1e3)

    server_before, client_before = cpu_seconds(server_pid), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker(count // concurrency) for _ in range(concurrency)))
    figures = percentiles(latencies, time.perf_counter() - started)
    done = len(latencies)
    figures["cpu_us"] = (time.process_time() - client_before) / done * 1e6
    figures["server_cpu_us"] = (cpu_seconds(server_pid) - server_before) / done * 1e6
    return figures


def bench_redis(workdir: Path, count: int, concurrency: int, rounds: int,
                pinning: Pinning) -> dict[str, list[dict[str, float]]]:
    import logging

    from adapters.redisquota import RedisQuotaAdapter, RedisQuotaHandler
    from mixer.sdk import Env, Instance, QuotaArgs
    from mixer.selfmetrics import SelfMetrics

    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = start([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  "--dir", str(workdir)], log_path=str(workdir / "redis.log"))
    try:
        wait_for_port(port, 15, proc)
        pinning.serve(proc.pid)

        async def run() -> dict[str, list[dict[str, float]]]:
            adapter = RedisQuotaAdapter()
            params = adapter.parse_params({"redisServerUrl": f"127.0.0.1:{port}", "connectionPoolSize": concurrency,
                                           "quotas": [{"name": "requestcount", "maxAmount": 10**12,
                                                       "validDuration": "1h"}]})
            handler = adapter.build(params, Env("bench", logging.getLogger("bench"), SelfMetrics()), {})
            assert isinstance(handler, RedisQuotaHandler)
            await handler.start()
            client = handler._client  # the same pool and connections: only the command differs
            assert client is not None
            instance = Instance("requestcount.instance.istio-system", "quota",
                                {"dimensions": {"destination": SERVICE_HOST}})
            args = QuotaArgs(1)

            async def allocate() -> None:
                result = await handler.allocate_quota(instance, args)
                assert result.granted_amount == 1

            async def incr() -> None:
                await client.incr("bench:incr")

            ops = {"incr": incr, "redisquota": allocate}
            for op in ops.values():  # warm up: connections open, script loaded
                await _timed(op, 1000, concurrency, proc.pid)
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in ops}
            for index in range(rounds):  # interleaved as ``interleave`` does, on this event loop
                for name in ops if index % 2 == 0 else reversed(list(ops)):
                    runs[name].append(await _timed(ops[name], count, concurrency, proc.pid))
            await handler.close()
            return runs

        return asyncio.run(run())
    finally:
        stop(proc)


# -- main ---------------------------------------------------------------------------------------


def row(label: str, runs: list[dict[str, float]], cpu_key: str = "cpu_us") -> str:
    figures = medians(runs)
    return (f"| {label} | {figures['rps']:,.0f} | {figures['p50']:.2f} | {figures['p99']:.2f} | "
            f"{figures[cpu_key]:.0f} |")


def spread(value: tuple[float, float, float]) -> str:
    return f"{value[0]:.2f}x ({value[1]:.2f}-{value[2]:.2f})"


def ratio_row(label: str, subject: list[dict[str, float]], baseline: list[dict[str, float]],
              cpu_key: str = "cpu_us") -> str:
    cost = ratios([{**run, "cpu_us": run[cpu_key]} for run in subject],
                  [{**run, "cpu_us": run[cpu_key]} for run in baseline])
    return f"| {label} | {spread(cost['rps'])} | {spread(cost['p50'])} | {spread(cost['p99'])} | {spread(cost['cpu_us'])} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per gRPC/Envoy measurement")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds; medians and spreads are reported")
    parser.add_argument("--connections", type=int, default=8, help="requests in flight (gRPC and Envoy)")
    parser.add_argument("--cache-checks", type=int, default=5_000, help="checks per cache round")
    parser.add_argument("--redis-ops", type=int, default=10_000,
                        help="operations per Redis round (enough 10 ms CPU ticks for redis-server's few µs per op)")
    parser.add_argument("--redis-concurrency", type=int, default=8)
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin servers and clients to CPUs")
    parser.add_argument("--only", choices=("cache", "native", "envoy", "redis"), action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--append", action="store_true", help="append the results to BENCHMARKS.md")
    parser.add_argument("--bare-native", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_native:
        serve_bare_native(args.bare_native)
        return 0

    parts = set(args.only or ("cache", "native", "envoy", "redis"))
    pinning = Pinning(args.pin)
    machine = (f"{platform.machine()}, {os.cpu_count()} cpus shared with other jobs, Python "
               f"{platform.python_version()}, Envoy load: {'wrk' if shutil.which('wrk') else 'aiohttp'}, "
               f"{pinning.describe()}")
    load_before = os.getloadavg()
    print(f"machine: {machine}; load average {load_before[0]:.1f}", flush=True)
    lines = ["| path | checks/s | p50 ms | p99 ms | server CPU µs per check |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        workdir = Path(tmp)
        if "native" in parts:
            native = bench_native(args, workdir, pinning)
            lines += [
                row("native gRPC Check -> bare grpc.aio allow-all server", native["bare"]),
                row("native gRPC Check -> mixer, allow-all handler (noop), check cache off", native["allowall"]),
                row("native gRPC Check -> mixer rbac + memquota, check cache on", native["cached"]),
                row("native gRPC Check -> mixer rbac + memquota, check cache off", native["uncached"]),
                ratio_row("rbac + memquota (cache on) vs allow-all handler: median (min-max)",
                          native["cached"], native["allowall"]),
                ratio_row("rbac + memquota (cache off) vs allow-all handler: median (min-max)",
                          native["uncached"], native["allowall"]),
                ratio_row("rbac + memquota (cache on) vs bare: median (min-max)", native["cached"], native["bare"]),
                ratio_row("rbac + memquota (cache off) vs bare: median (min-max)", native["uncached"], native["bare"]),
                ratio_row("allow-all handler vs bare: median (min-max)", native["allowall"], native["bare"]),
            ]
            print("\n".join(lines[-9:]), flush=True)
        if "envoy" in parts:
            with pinning.released():
                envoy = bench_envoy(args, workdir)
            lines += [
                row("Envoy ext_authz -> bare grpc.aio allow", envoy["bare"]),
                row("Envoy ext_authz -> mixer, allow-all handler (noop), check cache off", envoy["allowall"]),
                row("Envoy ext_authz -> mixer rbac + memquota (cache on)", envoy["mixer"]),
                ratio_row("rbac + memquota vs allow-all handler: median (min-max)", envoy["mixer"], envoy["allowall"]),
                ratio_row("rbac + memquota vs bare: median (min-max)", envoy["mixer"], envoy["bare"]),
                ratio_row("allow-all handler vs bare: median (min-max)", envoy["allowall"], envoy["bare"]),
            ]
            print("\n".join(lines[-6:]), flush=True)
        if "redis" in parts:
            redis_runs = bench_redis(workdir, args.redis_ops, args.redis_concurrency, args.rounds, pinning)
            conc = args.redis_concurrency
            lines += [
                row(f"raw Redis INCR ({conc} in flight; client CPU)", redis_runs["incr"]),
                row(f"redisquota allocate_quota ({conc} in flight; client CPU)", redis_runs["redisquota"]),
                ratio_row("cost vs INCR, client CPU: median (min-max)", redis_runs["redisquota"], redis_runs["incr"]),
                row("  the same, redis-server CPU", redis_runs["incr"], "server_cpu_us").replace(
                    "the same", "raw Redis INCR"),
                row("  the same, redis-server CPU", redis_runs["redisquota"], "server_cpu_us").replace(
                    "the same", "redisquota allocate_quota"),
                ratio_row("cost vs INCR, redis-server CPU: median (min-max)", redis_runs["redisquota"],
                          redis_runs["incr"], "server_cpu_us"),
            ]
            print("\n".join(lines[-6:]), flush=True)
        if "cache" in parts:
            cache = bench_cache(args.cache_checks, args.rounds)
            cheaper = ratios(cache["miss"], cache["hit"])["cpu_us"]
            hit, miss = medians(cache["hit"])["cpu_us"], medians(cache["miss"])["cpu_us"]
            native_hit, native_miss = medians(cache["native hit"])["cpu_us"], medians(cache["native miss"])["cpu_us"]
            lines += ["", f"Check cache, in process (`Runtime.check`, rbac, no quota asked; CPU time): a hit "
                          f"{hit:.1f} µs, a miss {miss:.1f} µs: a hit is {spread(cheaper)} cheaper (median "
                          f"and range over {args.rounds} interleaved rounds). A whole native Check in process "
                          f"(JSON in, rbac + memquota, JSON out): {native_hit:.1f} µs with the cache, "
                          f"{native_miss:.1f} µs without."]
            print(lines[-1], flush=True)
    load_after = os.getloadavg()
    lines += ["", f"Ratios are the subject's cost over the same-run baseline (>1: dearer): checks/s as baseline "
                  f"over subject, p50, p99 and CPU per check as subject over baseline, one ratio per round. "
                  f"Load average {load_before[0]:.1f} before, {load_after[0]:.1f} after."]
    print("\n".join(lines))
    if args.append:
        command = ".venv/bin/python bench/check.py " + " ".join(a for a in sys.argv[1:] if a != "--append")
        section = ["", "## bench/check.py", "",
                   f"`{command.strip()}` ({time.strftime('%Y-%m-%d')}; {machine}; {args.connections} in flight, "
                   f"{args.rounds} interleaved rounds of {args.duration:g}s, medians)", "", *lines, ""]
        with open(ROOT / "BENCHMARKS.md", "a") as handle:
            handle.write("\n".join(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
