"""Reports/s through front door -> Kafka -> worker -> prometheus adapter, against the in-process path
(one ``mixer serve`` dispatching to the same prometheus adapter), measured in the same run.

Both paths take the same native-API reports (batches of 100 Envoy-like bags, pre-encoded JSON, a few
concurrent clients) on real ``mixer serve`` processes running Istio's metrics config into the
prometheus adapter (the default config less its stdout access log). The in-process path is done when every report is answered; the Kafka
path when the worker has committed every bag. "Per core" divides by the CPU seconds the mixer
processes used (front door + worker for Kafka; the broker's CPU is printed apart: it is
infrastructure any Kafka deployment runs anyway). Goal: the Kafka path at >= 0.5x the in-process
rate per core.

    .venv/bin/python bench/kafka.py [--bags 100000] [--batch 100] [--clients 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dispatch import make_bags  # noqa: E402 - the same bags as bench/dispatch.py
from procstat import cpu_seconds  # noqa: E402

from mixer.attributes import format_duration  # noqa: E402
from mixer.config import DEFAULT_CONFIG_DIR  # noqa: E402
from mixer.thirdparty import KafkaBroker, ensure  # noqa: E402
from mixer.processes import free_port, http_get, start, stop, wait_until_ready  # noqa: E402

def bodies(count: int, batch: int) -> list[bytes]:
    bags = make_bags(count)
    for bag in bags:
        bag["response.duration"] = format_duration(bag["response.duration"])
    return [orjson.dumps({"attributes": bags[i : i + batch]}) for i in range(0, count, batch)]


# Istio's metrics into the prometheus adapter: the default config without its access log (a stdio
# handler writing a JSON line per request, which would dominate both paths alike).
CONFIG_FILES = ("istio-telemetry.yaml", "prometheus.yaml")


def config_dir(workdir: Path, name: str) -> Path:
    """Istio's metrics config with the prometheus adapter on a port of its own."""
    folder = workdir / name
    folder.mkdir()
    for file in CONFIG_FILES:
        shutil.copy(DEFAULT_CONFIG_DIR / file, folder / file)
    prom = folder / "prometheus.yaml"
    text = prom.read_text()
    text = re.sub(r"(  params:\n)", rf'\1    address: "127.0.0.1:{free_port()}"\n', text, count=1)
    prom.write_text(text)
    return folder


class Mixer:
    def __init__(self, workdir: Path, name: str, *flags: str) -> None:
        self.port = free_port()
        self.proc = start([sys.executable, "-m", "mixer.cli", "serve", "--config", str(config_dir(workdir, name)),
                           "--port", str(self.port), "--no-grpc", "--watch-interval", "0", "--log-level",
                           "WARNING", *flags], workdir / f"{name}.log")
        wait_until_ready(lambda: (http_get(f"http://127.0.0.1:{self.port}/readyz") or (0,))[0] == 200, 60,
                         self.proc, what=name)

    def metric(self, name: str) -> float:
        answer = http_get(f"http://127.0.0.1:{self.port}/metrics", timeout=5)
        assert answer is not None
        match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", answer[1].decode(), re.M)
        return float(match.group(1)) if match else 0.0

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        stop(self.proc)


async def post_all(url: str, payloads: list[bytes], clients: int) -> None:
    queue = list(reversed(payloads))
    async with aiohttp.ClientSession() as session:
        async def client() -> None:
            while queue:
                body = queue.pop()
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as reply:
                    if reply.status != 200:
                        raise RuntimeError(f"{url}: HTTP {reply.status}: {await reply.text()}")
                    await reply.read()

        await asyncio.gather(*(client() for _ in range(clients)))


def run_local(workdir: Path, payloads: list[bytes], bags: int, clients: int) -> tuple[float, float]:
    mixer = Mixer(workdir, f"local-{time.monotonic_ns()}", "--mode", "local")
    try:
        cpu0, t0 = mixer.cpu(), time.perf_counter()
        asyncio.run(post_all(f"http://127.0.0.1:{mixer.port}/v1/report", payloads, clients))
        wall, cpu = time.perf_counter() - t0, mixer.cpu() - cpu0
        assert mixer.metric("mixer_reports_total") == bags
    finally:
        mixer.stop()
    return bags / wall, bags / cpu


def run_kafka(workdir: Path, broker: KafkaBroker, payloads: list[bytes], bags: int,
              clients: int) -> tuple[float, float, float]:
    topic = f"bench-{time.monotonic_ns()}"
    kafka = ["--kafka-bootstrap", broker.bootstrap, "--kafka-topic", topic, "--kafka-group", f"{topic}-workers"]
    front = Mixer(workdir, f"{topic}-front", "--mode", "frontdoor", *kafka)
    worker = Mixer(workdir, f"{topic}-worker", "--mode", "worker", *kafka)
    try:
        assert broker.pid is not None
        cpus0 = front.cpu() + worker.cpu()
        broker0, t0 = cpu_seconds(broker.pid), time.perf_counter()
        asyncio.run(post_all(f"http://127.0.0.1:{front.port}/v1/report", payloads, clients))
        deadline = time.monotonic() + 300
        while worker.metric("mixer_kafka_committed_bags_total") < bags:
            if time.monotonic() > deadline:
                raise TimeoutError("the worker did not commit every bag")
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        cpu = front.cpu() + worker.cpu() - cpus0
        broker_cpu = cpu_seconds(broker.pid) - broker0
        assert worker.metric("mixer_kafka_consumed_bags_total") == bags
    finally:
        front.stop()
        worker.stop()
    return bags / wall, bags / cpu, bags / (cpu + broker_cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bags", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    payloads = bodies(args.bags, args.batch)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{args.bags} bags in reports of {args.batch}, {args.clients} concurrent clients, best of {args.rounds}")
    workdir = Path(tempfile.mkdtemp(prefix="mixer-bench-kafka-"))
    local: list[tuple[float, float]] = []
    remote: list[tuple[float, float, float]] = []
    try:
        with KafkaBroker(ensure("kafka"), workdir / "broker", partitions=4) as broker:
            for n in range(args.rounds):  # interleaved, so both see the same machine
                local.append(run_local(workdir, payloads, args.bags, args.clients))
                remote.append(run_kafka(workdir, broker, payloads, args.bags, args.clients))
                print(f"  round {n + 1}: in-process {local[-1][0]:,.0f}/s ({local[-1][1]:,.0f}/s per core), "
                      f"Kafka {remote[-1][0]:,.0f}/s ({remote[-1][1]:,.0f}/s per core)", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    local_wall, local_core = max(r[0] for r in local), max(r[1] for r in local)
    kafka_wall, kafka_core = max(r[0] for r in remote), max(r[1] for r in remote)
    kafka_core_with_broker = max(r[2] for r in remote)
    print(f"in-process (serve --mode local):          {local_wall:>9,.0f} reports/s   {local_core:>9,.0f} reports/s per core")
    print(f"front door -> Kafka -> worker:            {kafka_wall:>9,.0f} reports/s   {kafka_core:>9,.0f} reports/s per core "
          f"({kafka_core_with_broker:,.0f} counting the broker's CPU)")
    ratio = kafka_core / local_core
    print(f"Kafka / in-process per core: {ratio:.2f}x (goal >= 0.5x: {'met' if ratio >= 0.5 else 'NOT met'}); "
          f"wall-clock ratio {kafka_wall / local_wall:.2f}x")


if __name__ == "__main__":
    main()
