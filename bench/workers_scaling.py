"""Does ``mixer serve --workers 2`` scale? Access-log entries per second at saturation, 1 vs 2 workers.

``bench/mesh_cost.py`` cannot tell: on this machine the Envoys and wrk saturate the cores long before
one mixer worker does. Here a client sends the recorded real Envoy 1.40 ALS messages
(tests/frontdoors/testdata/envoy-probe, ``--batch-size`` entries each, what Envoy's 16 KiB buffer
holds) straight to ``mixer serve`` over gRPC on ``--streams`` streams, each on a connection of its
own (the kernel spreads connections over the workers, SO_REUSEPORT), as fast as gRPC's flow control
lets it: enough to keep every worker busy. The mixer runs the default config (as in mesh_cost: its
prometheus handler on a free port, spans to 127.0.0.1:4317 where nothing listens).

Per run, over its steady part (from one second in to the end of sending): entries/s, counted from
the streams' answers (an answer comes once the mixer has dispatched the stream's entries; streams of
``--stream-messages`` messages follow one another on each connection, so little waits unanswered),
the mixer's CPU (its process and workers, from /proc) as cores busy and as vCPU per 1,000 entries/s,
and entries per mixer CPU second: where the machine has fewer free cores than workers (other work,
the client), throughput can only grow with the cores the workers get, and this tells whether each
worker stays as efficient as one alone. After the run, ``istio_requests_total`` summed over
``/metrics`` (any worker's scrape returns the sum over all of them) must have grown by exactly the
number of entries sent. The client is one process sending pre-serialized messages (~0.05 of a core).

    .venv/bin/python bench/workers_scaling.py [--duration 10] [--rounds 3] [--streams 16] [--batch-size 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
from envoy.service.accesslog.v3 import als_pb2
from google.protobuf import json_format

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mesh_cost import start_mixer  # noqa: E402 - a sibling bench script
from procstat import tree_cpu_seconds  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "frontdoors" / "testdata" / "envoy-probe"
ALS = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs"
REQUESTS = re.compile(r"^istio_requests_total\{[^}]*\} ([0-9.e+]+)$", re.M)


def messages(batch_size: int) -> tuple[bytes, bytes]:
    """(the stream's first message: the sidecar's identifier and a batch, every later message: a batch)."""
    lines = (REFERENCE / "als_http_entries.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    batch = als_pb2.StreamAccessLogsMessage()
    for i in range(batch_size):
        json_format.ParseDict(entries[i % len(entries)], batch.http_logs.log_entry.add())
    first = json_format.Parse((REFERENCE / "als_identifier_node.json").read_text(), als_pb2.StreamAccessLogsMessage())
    first.MergeFrom(batch)
    return first.SerializeToString(), batch.SerializeToString()


@dataclass
class Progress:
    """What the streams have had answered: an answer comes once the mixer has dispatched the stream."""

    entries: int = 0  # in answered streams
    window_from: float = 0.0
    window_to: float = 0.0
    in_window: int = 0  # entries of the streams answered inside [window_from, window_to]


async def connection(port: int, first: bytes, batch: bytes, args: argparse.Namespace, until: float,
                     progress: Progress) -> None:
    """One connection of its own (a local subchannel pool: gRPC would otherwise share one TCP
    connection among channels to the same address, and every stream would reach one worker), on
    which streams of ``--stream-messages`` messages follow one another until ``until``. A stream's
    answer comes once its entries are dispatched, so at most one stream's messages wait per connection."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        call = channel.stream_unary(ALS)  # bytes in, bytes out: no serializers
        messages = [first] + [batch] * (args.stream_messages - 1)
        while time.monotonic() < until:
            await call(iter(messages), timeout=120)
            done = time.monotonic()
            entries = args.stream_messages * args.batch_size
            progress.entries += entries
            if progress.window_from <= done <= progress.window_to:
                progress.in_window += entries


def requests_total(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return sum(float(v) for v in REQUESTS.findall(text))


def counted(metrics_port: int, expected: float, timeout: float = 15.0) -> float:
    """``istio_requests_total`` once it reaches ``expected`` (workers publish their part once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        value = requests_total(metrics_port)
        if value >= expected or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def run(grpc_port: int, metrics_port: int, pid: int, args: argparse.Namespace,
        first: bytes, batch: bytes) -> dict[str, float]:
    """Entries/s and CPU over the run's steady part: from one second in (every connection busy) to
    its end (none has stopped yet); the counted total includes the streams finishing after it."""
    before = counted(metrics_port, 0)
    progress = Progress()
    cpu: list[float] = []
    client: list[float] = []

    async def everything() -> None:
        now = time.monotonic()
        until = now + args.duration
        progress.window_from, progress.window_to = now + 1.0, until

        async def sample_cpu_at(when: float) -> None:
            await asyncio.sleep(when - time.monotonic())
            cpu.append(tree_cpu_seconds(pid))
            client.append(time.process_time())

        await asyncio.gather(sample_cpu_at(progress.window_from), sample_cpu_at(progress.window_to),
                             *(connection(grpc_port, first, batch, args, until, progress) for _ in range(args.streams)))

    asyncio.run(everything())
    window = progress.window_to - progress.window_from
    rate = progress.in_window / window
    busy = (cpu[1] - cpu[0]) / window
    after = counted(metrics_port, before + progress.entries)
    return {"entries_per_s": rate, "cores": busy, "vcpu_per_k": busy / (rate / 1000),
            "client_cores": (client[1] - client[0]) / window, "entries": progress.entries,
            "counted": after - before}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending per run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per worker count, alternating (default 3)")
    parser.add_argument("--streams", type=int, default=16, help="ALS streams, one connection each (default 16)")
    parser.add_argument("--batch-size", type=int, default=20, help="entries per ALS message (default 20)")
    parser.add_argument("--stream-messages", type=int, default=20,
                        help="messages per stream before the next stream on the same connection (default 20)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f} at start; {args.streams} streams, {args.batch_size} entries "
          f"per message, {args.rounds} alternating rounds of {args.duration:g}s", flush=True)
    first, batch = messages(args.batch_size)
    results: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory(prefix="workers-scaling-") as tmp, ExitStack() as stack:
        mixers = {}
        for n in counts:
            workdir = Path(tmp) / f"workers-{n}"
            workdir.mkdir()
            grpc_port, _http_port, pid = start_mixer(workdir, "", n, stack)
            address = re.search(r"address: 127\.0\.0\.1:(\d+)", (workdir / "config" / "prometheus.yaml").read_text())
            assert address, "mesh_cost.mixer_config no longer sets the prometheus handler's address"
            mixers[n] = (grpc_port, int(address.group(1)), pid)
        for n, (grpc_port, metrics_port, pid) in mixers.items():  # warm up: connections, caches, series
            warm = argparse.Namespace(**{**vars(args), "duration": 2.0})
            run(grpc_port, metrics_port, pid, warm, first, batch)
        for round_no in range(args.rounds):
            order = counts[round_no % len(counts):] + counts[:round_no % len(counts)]
            for n in order:
                figures = run(*mixers[n], args, first, batch)
                results[n].append(figures)
                ok = "ok" if figures["counted"] == figures["entries"] else "MISMATCH"
                print(f"round {round_no + 1}, {n} worker(s): {figures['entries_per_s']:,.0f} entries/s, "
                      f"{figures['cores']:.2f} cores busy (client {figures['client_cores']:.2f}), "
                      f"{figures['vcpu_per_k']:.3f} vCPU per 1k entries/s; "
                      f"istio_requests_total +{figures['counted']:,.0f} for {figures['entries']:,.0f} entries sent "
                      f"({ok})", flush=True)
    base = statistics.median(r["entries_per_s"] for r in results[counts[0]])
    print("| workers | entries/s (median, range) | x one worker | mixer cores busy | client cores busy | "
          "vCPU / 1k entries/s | entries per mixer CPU second | /metrics counted = sent |")
    print("|---|---|---|---|---|---|---|---|")
    for n in counts:
        runs = results[n]
        rate = statistics.median(r["entries_per_s"] for r in runs)
        low, high = min(r["entries_per_s"] for r in runs), max(r["entries_per_s"] for r in runs)
        exact = all(r["counted"] == r["entries"] for r in runs)
        counts_text = "yes, every run" if exact else "NO: " + ", ".join(
            f"{r['counted']:.0f} of {r['entries']:.0f}" for r in runs)
        print(f"| {n} | {rate:,.0f} ({low:,.0f}-{high:,.0f}) | {rate / base:.2f} | "
              f"{statistics.median(r['cores'] for r in runs):.2f} | "
              f"{statistics.median(r['client_cores'] for r in runs):.2f} | "
              f"{statistics.median(r['vcpu_per_k'] for r in runs):.3f} | "
              f"{statistics.median(r['entries_per_s'] / r['cores'] for r in runs):,.0f} | {counts_text} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
