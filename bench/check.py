"""The check path: rbac + memquota through the native gRPC Check and through Envoy's ext_authz, each
against a bare allow-all handler in the same run; the check cache (hit vs miss); redisquota against
a raw Redis INCR round trip. Loopback only; every server is a child process stopped by its PID.

    .venv/bin/python bench/check.py [--duration 3] [--rounds 2] [--connections 8] [--append]

Baselines, measured in the same run:
- native gRPC: a grpc.aio server answering ``mixer.v1.Mixer/Check`` with a constant allow (no
  decoding, no policy), against ``mixer serve`` checking rbac and allocating a memquota quota per call
  (check cache on, and off);
- Envoy ext_authz: the same Envoy bootstrap pointed at a bare grpc.aio allow server or at the mixer;
- cache: ``Runtime.check`` in process, the same bags answered from the cache or by the handlers;
- redisquota: one ``allocate_quota`` (an EVALSHA of the window script) against one ``INCR`` on the
  same client, both through redis.asyncio against the same redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import envoy_check  # noqa: E402 - the sibling benchmark's Envoy bootstrap and load generator

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

ALLOW_JSON = orjson.dumps({"status": {"code": 0, "message": ""}, "valid_duration": "60s",
                           "valid_use_count": 10000, "quotas": {}})


def percentiles(latencies_ms: list[float], seconds: float) -> dict[str, float]:
    latencies_ms.sort()
    return {"rps": len(latencies_ms) / seconds, "p50": latencies_ms[len(latencies_ms) // 2],
            "p99": latencies_ms[int(len(latencies_ms) * 0.99)]}


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


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
    return percentiles(latencies, seconds)


def mixer_command(config: Path, grpc_port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mixer.cli", "serve", "--config", str(config), "--port", str(free_port()),
            "--grpc-port", str(grpc_port), "--watch-interval", "0", "--log-level", "WARNING", *extra]


def bench_native(args: argparse.Namespace, workdir: Path) -> dict[str, dict[str, float]]:
    config = workdir / "policy.yaml"
    config.write_text(POLICY)
    ports = {"bare": free_port(), "cached": free_port(), "uncached": free_port()}
    procs = {
        "bare": start([sys.executable, str(Path(__file__).resolve()), "--bare-native", str(ports["bare"])],
                      log_path=str(workdir / "bare-native.log"), cwd=str(ROOT)),
        "cached": start(mixer_command(config, ports["cached"]), log_path=str(workdir / "cached.log"), cwd=str(ROOT)),
        "uncached": start(mixer_command(config, ports["uncached"], "--check-cache-size", "0"),
                          log_path=str(workdir / "uncached.log"), cwd=str(ROOT)),
    }
    try:
        for name, port in ports.items():
            wait_for_port(port, 30, procs[name])
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
        for name, port in ports.items():  # warm up
            asyncio.run(native_load(port, 1, args.connections))
        for _ in range(args.rounds):  # alternate, so drift on a shared machine hits all alike
            for name, port in ports.items():
                runs[name].append(asyncio.run(native_load(port, args.duration, args.connections)))
        return {name: medians(results) for name, results in runs.items()}
    finally:
        for proc in procs.values():
            stop(proc)


def bench_envoy(args: argparse.Namespace, workdir: Path) -> dict[str, dict[str, float]]:
    import yaml

    from proxy import EnvoyProcess

    config = workdir / "policy.yaml"
    config.write_text(POLICY)
    authz = {"bare": free_port(), "mixer": free_port()}
    procs = [
        start([sys.executable, str(ROOT / "bench" / "envoy_check.py"), "--bare-server", str(authz["bare"])],
              log_path=str(workdir / "bare-authz.log"), cwd=str(ROOT)),
        start(mixer_command(config, authz["mixer"], "--trust-peer-headers", "--authz-quota", "requestcount"),
              log_path=str(workdir / "mixer-authz.log"), cwd=str(ROOT)),
    ]
    envoys: dict[str, EnvoyProcess] = {}
    listen = {"bare": free_port(), "mixer": free_port()}
    try:
        wait_for_port(authz["bare"], 30, procs[0])
        wait_for_port(authz["mixer"], 30, procs[1])
        for name in authz:
            path = workdir / f"envoy-{name}.yaml"
            path.write_text(yaml.safe_dump(envoy_check.check_only_bootstrap("b-v1", listen[name], authz[name])))
            envoys[name] = EnvoyProcess(path, log_path=workdir / f"envoy-{name}.log")
            envoys[name].start()
        for envoy in envoys.values():
            envoy.wait_ready()
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in authz}
        for name in runs:
            warm = envoy_check.load(listen[name], 1, args.connections)
            assert warm["non2xx"] == 0, f"{name}: {warm}"  # the policy allows a-v1 -> b GET /bench
        for _ in range(args.rounds):
            for name in runs:
                runs[name].append(envoy_check.load(listen[name], args.duration, args.connections))
        return {name: medians(results) for name, results in runs.items()}
    finally:
        for envoy in envoys.values():
            envoy.close()
        for proc in procs:
            stop(proc)


# -- the cache in process -----------------------------------------------------------------------


def bench_cache(checks: int) -> dict[str, float]:
    """Microseconds per Runtime.check (no quota asked: the cached part), from the cache vs by rbac."""
    from mixer.attributes import bag_from_json
    from mixer.config import compile_config
    from mixer.runtime import Runtime

    async def per_check(cache_size: int) -> float:
        runtime = Runtime(check_cache_size=cache_size)
        await runtime.apply(compile_config([("policy.yaml", POLICY)], runtime.registry))
        manifest = runtime.manifest
        bags = [bag_from_json(orjson.loads(native_request())["attributes"], manifest) for _ in range(1000)]
        for bag in bags[:10]:
            assert (await runtime.check(bag)).result.ok
        started = time.perf_counter()
        for i in range(checks):
            await runtime.check(bags[i % len(bags)])
        elapsed = time.perf_counter() - started
        if cache_size:
            assert runtime.metrics.check_cache.labels("hit")._value.get() >= checks - 1
        await runtime.close()
        return elapsed / checks * 1e6

    return {"hit_us": min(asyncio.run(per_check(10_000)) for _ in range(3)),
            "miss_us": min(asyncio.run(per_check(0)) for _ in range(3))}


# -- redisquota against INCR --------------------------------------------------------------------


async def _timed(op: Callable[[], Awaitable[Any]], count: int, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            started = time.perf_counter()
            await op()
            latencies.append((time.perf_counter() - started) * 1e3)

    started = time.perf_counter()
    await asyncio.gather(*(worker(count // concurrency) for _ in range(concurrency)))
    return percentiles(latencies, time.perf_counter() - started)


def bench_redis(workdir: Path, count: int, concurrency: int, rounds: int) -> dict[str, dict[str, float]]:
    import logging

    from adapters.redisquota import RedisQuotaAdapter
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

        async def run() -> dict[str, dict[str, float]]:
            adapter = RedisQuotaAdapter()
            params = adapter.parse_params({"redisServerUrl": f"127.0.0.1:{port}", "connectionPoolSize": concurrency,
                                           "quotas": [{"name": "requestcount", "maxAmount": 10**12,
                                                       "validDuration": "1h"}]})
            handler = adapter.build(params, Env("bench", logging.getLogger("bench"), SelfMetrics()), {})
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

            runs: dict[str, list[dict[str, float]]] = {"incr": [], "redisquota": []}
            await _timed(incr, 1000, concurrency)
            await _timed(allocate, 1000, concurrency)
            for _ in range(rounds):
                runs["incr"].append(await _timed(incr, count, concurrency))
                runs["redisquota"].append(await _timed(allocate, count, concurrency))
            await handler.close()
            return {name: medians(results) for name, results in runs.items()}

        return asyncio.run(run())
    finally:
        stop(proc)


# -- main ---------------------------------------------------------------------------------------


def row(label: str, figures: dict[str, float]) -> str:
    return f"| {label} | {figures['rps']:,.0f} | {figures['p50']:.2f} | {figures['p99']:.2f} |"


def ratio_row(label: str, slow: dict[str, float], fast: dict[str, float]) -> str:
    return (f"| {label} | {fast['rps'] / slow['rps']:.2f}x | {slow['p50'] / fast['p50']:.2f}x | "
            f"{slow['p99'] / fast['p99']:.2f}x |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per gRPC/Envoy measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; medians are reported")
    parser.add_argument("--connections", type=int, default=8, help="requests in flight (gRPC and Envoy)")
    parser.add_argument("--cache-checks", type=int, default=20_000)
    parser.add_argument("--redis-ops", type=int, default=5_000)
    parser.add_argument("--redis-concurrency", type=int, default=8)
    parser.add_argument("--append", action="store_true", help="append the results to BENCHMARKS.md")
    parser.add_argument("--bare-native", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_native:
        serve_bare_native(args.bare_native)
        return 0

    machine = (f"{platform.machine()}, {os.cpu_count()} cpus shared with other jobs, Python "
               f"{platform.python_version()}, Envoy load: {'wrk' if shutil.which('wrk') else 'aiohttp'}")
    print(f"machine: {machine}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        workdir = Path(tmp)
        cache = bench_cache(args.cache_checks)
        print(f"cache: hit {cache['hit_us']:.1f} us, miss {cache['miss_us']:.1f} us", flush=True)
        native = bench_native(args, workdir)
        print(f"native: {native}", flush=True)
        envoy = bench_envoy(args, workdir)
        print(f"envoy: {envoy}", flush=True)
        redis_figures = bench_redis(workdir, args.redis_ops, args.redis_concurrency, args.rounds)
        print(f"redis: {redis_figures}", flush=True)

    lines = [
        "| path | checks/s | p50 ms | p99 ms |",
        "|---|---|---|---|",
        row("native gRPC Check -> bare allow-all server", native["bare"]),
        row("native gRPC Check -> mixer rbac + memquota, check cache on", native["cached"]),
        row("native gRPC Check -> mixer rbac + memquota, check cache off", native["uncached"]),
        ratio_row("cost vs bare (cache on): rps / p50 / p99", native["cached"], native["bare"]),
        ratio_row("cost vs bare (cache off): rps / p50 / p99", native["uncached"], native["bare"]),
        row("Envoy ext_authz -> bare grpc.aio allow", envoy["bare"]),
        row("Envoy ext_authz -> mixer rbac + memquota (cache on)", envoy["mixer"]),
        ratio_row("cost vs bare: rps / p50 / p99", envoy["mixer"], envoy["bare"]),
        row(f"raw Redis INCR ({args.redis_concurrency} in flight)", redis_figures["incr"]),
        row(f"redisquota allocate_quota ({args.redis_concurrency} in flight)", redis_figures["redisquota"]),
        ratio_row("cost vs INCR: rps / p50 / p99", redis_figures["redisquota"], redis_figures["incr"]),
        "",
        f"Check cache, in process (`Runtime.check`, rbac, no quota asked): a hit {cache['hit_us']:.1f} µs, "
        f"a miss {cache['miss_us']:.1f} µs: a hit is {cache['miss_us'] / cache['hit_us']:.1f}x cheaper.",
    ]
    print("\n".join(lines))
    if args.append:
        command = ".venv/bin/python bench/check.py " + " ".join(a for a in sys.argv[1:] if a != "--append")
        section = ["", "## bench/check.py", "",
                   f"`{command.strip()}` ({time.strftime('%Y-%m-%d')}; {machine}; {args.connections} in flight, "
                   f"{args.rounds} alternating rounds of {args.duration:g}s, medians)", "", *lines, ""]
        with open(ROOT / "BENCHMARKS.md", "a") as handle:
            handle.write("\n".join(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
