"""Per-entry cost of Envoy access-log ingestion, stage by stage, in process (no gRPC, no Envoy).

Feeds the recorded real Envoy 1.40 ALS entries (tests/frontdoors/testdata/envoy-probe) through
``AccessLogFrontDoor.ingest`` on the default config, one serialized message of ``--batch-size``
entries at a time (Envoy's 16 KiB log buffer holds ~20 of them), and prints per entry:

- ``decode``: ``StreamAccessLogsMessage.FromString`` and touching each entry;
- ``map``: decode + entry -> attribute bag, as the door does it for the default config;
- ``rules->noop``: decode + map + the default config's rules and instances, every handler a noop;
- ``default``: the full default config: prometheus, the stdio access log (stdout to /dev/null) and
  the spans from access log entries (the otlp handler sending to 127.0.0.1:4317, where nothing
  listens: as in ``bench/mesh_cost.py`` after its first seconds, the handler's queue is full, so
  new spans are dropped and counted (``queue_full``); its queue is 10 spans here, full after warm-up);
- ``no-spans``: the default config without the tracing rule (prometheus and the access log);
- ``telemetry``: Istio's metrics into prometheus only (no access log, no spans).

Two figures per stage: the best of ``--repeats`` timings (µs per entry; noisy on a shared machine,
the best is the least disturbed), and with ``--instructions`` the CPU instructions per entry counted
by valgrind's callgrind (repeatable to ~0.1% whatever the load; needs ``valgrind``, ~1 min).

    .venv/bin/python bench/als_ingest.py [--batch-size 20] [--messages 200] [--repeats 7] [--instructions]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from envoy.service.accesslog.v3 import als_pb2
from google.protobuf import json_format

from mixer.attributes import Bag, ValueType
from mixer.config import DEFAULT_CONFIG_DIR
from mixer.envoy_attributes import stream_base_bag
from mixer.frontdoors import FrontDoorOptions
from mixer.frontdoors.als import AccessLogFrontDoor
from mixer.runtime import Runtime
from mixer.selfmetrics import SelfMetrics

import callgrind  # a sibling bench module: this script's directory is on sys.path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "frontdoors" / "testdata" / "envoy-probe"
STAGES = ("decode", "map", "rules->noop", "default", "no-spans", "telemetry")
# What each stage adds to: the handlers' cost is default - rules->noop; the others are measured against map.
BASES = {"map": "decode", "rules->noop": "map", "default": "rules->noop", "no-spans": "map", "telemetry": "map"}
# The shipped config files each stage leaves out.
LEFT_OUT = {"no-spans": {"istio-tracing.yaml"}, "telemetry": {"istio-tracing.yaml", "istio-accesslog.yaml"}}


def recorded_message(batch_size: int) -> tuple[bytes, als_pb2.StreamAccessLogsMessage]:
    """One serialized HTTP-logs message cycling through the recorded entries, and the stream's first
    message (the reporting sidecar's identifier)."""
    lines = (REFERENCE / "als_http_entries.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    message = als_pb2.StreamAccessLogsMessage()
    for i in range(batch_size):
        json_format.ParseDict(entries[i % len(entries)], message.http_logs.log_entry.add())
    first = json_format.Parse((REFERENCE / "als_identifier_node.json").read_text(), als_pb2.StreamAccessLogsMessage())
    return message.SerializeToString(), first


def config_files(workdir: Path, stage: str) -> list[str]:
    """The default config for ``stage``: as shipped (the prometheus handler on a free port, so that
    runs can overlap), less the files the stage leaves out, or with noop handlers."""
    shipped = [p for p in sorted(DEFAULT_CONFIG_DIR.glob("*.yaml")) if p.name not in LEFT_OUT.get(stage, ())]
    docs = [d for p in shipped for d in yaml.safe_load_all(p.read_text()) if d]
    for doc in docs:
        if doc.get("kind") != "handler":
            continue
        if stage in ("map", "rules->noop"):
            doc["spec"] = {"compiledAdapter": "noop"}
        elif doc["spec"]["compiledAdapter"] == "prometheus":
            doc["spec"]["params"]["address"] = "127.0.0.1:0"
        elif doc["spec"]["compiledAdapter"] == "otlp":
            # Nothing listens at its endpoint, as in bench/mesh_cost.py, where the queue is full after
            # the first seconds (10,000 spans at 4,000 a second): a queue of 10 is full after warm-up.
            doc["spec"]["params"]["delivery"] = {"queueSize": 10, "batchSize": 10}
    out = workdir / "config.yaml"
    out.write_text(yaml.safe_dump_all(docs))
    return [str(out)]


class MapOnly:
    """The runtime as the door sees it, but ``report`` drops the bags: the cost of mapping alone."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.metrics = runtime.metrics
        self.batch_size = runtime.batch_size
        self.ready = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)

    @property
    def manifest(self) -> Mapping[str, ValueType]:
        return self._runtime.manifest

    def report(self, bags: Sequence[Bag], front_door: str) -> int:
        return 0

    async def submit(self, bags: Sequence[Bag], front_door: str) -> int:
        return 0  # the doors hand bags over here (RuntimeLike.submit): dropped, as report does


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[None]:
    """The stdio handler writes to fd 1: point it at /dev/null (figures go to stderr meanwhile)."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def run_loop(step: Callable[[], Awaitable[int]], messages: int, loop: asyncio.AbstractEventLoop) -> None:
    """``messages`` calls of ``step`` inside ``functools.reduce``: callgrind counts only inside it
    (``--toggle-collect=functools_reduce``), so set-up and the interpreter's start are left out."""

    def once(done: int, _: int) -> int:
        return done + loop.run_until_complete(step())

    functools.reduce(once, range(messages), 0)


async def build_step(stage: str, raw: bytes, first: als_pb2.StreamAccessLogsMessage,
                     workdir: Path) -> tuple[Callable[[], Awaitable[int]], Runtime | None]:
    if stage == "decode":
        async def decode() -> int:
            message = als_pb2.StreamAccessLogsMessage.FromString(raw)
            for entry in message.http_logs.log_entry:
                entry.common_properties  # noqa: B018 - touch each entry, as ingestion does
            return 0

        return decode, None
    runtime = await Runtime.load(config_files(workdir, stage), SelfMetrics())
    door_runtime: Any = MapOnly(runtime) if stage == "map" else runtime
    door = AccessLogFrontDoor(door_runtime, FrontDoorOptions(trust_peer_headers=True))
    base, kind = stream_base_bag(first.identifier.node, first.identifier.log_name)

    async def ingest() -> int:
        return await door.ingest(als_pb2.StreamAccessLogsMessage.FromString(raw), base, kind)

    return ingest, runtime


def measure(stage: str, raw: bytes, first: als_pb2.StreamAccessLogsMessage, messages: int, repeats: int) -> float:
    """Best seconds for ``messages`` messages over ``repeats`` runs (after one warm-up run)."""
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory(prefix="als-ingest-") as tmp, stdout_to_devnull():
        step, runtime = loop.run_until_complete(build_step(stage, raw, first, Path(tmp)))
        run_loop(step, max(messages // 4, 1), loop)  # warm caches (IP parsing, series) before measuring
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            run_loop(step, messages, loop)
            best = min(best, time.perf_counter() - started)
        if runtime is not None:
            loop.run_until_complete(runtime.close())
    loop.close()
    return best


def count_instructions(args: argparse.Namespace) -> dict[str, float]:
    """Instructions per entry for each stage, one callgrind run (each stage one dump)."""
    totals = callgrind.counted_reduces(
        [__file__, "--counted-run", "--batch-size", str(args.batch_size), "--messages", str(args.counted_messages)],
        100_000, 1800)
    # Per stage: a warm-up reduce, then the counted one.
    counted = totals[1::2]
    if len(counted) != len(STAGES):
        raise RuntimeError(f"expected {len(STAGES)} counted runs, got {len(counted)} ({totals})")
    entries = args.counted_messages * args.batch_size
    return {stage: total / entries for stage, total in zip(STAGES, counted)}



def counted_run(args: argparse.Namespace) -> None:
    """Inside valgrind: each stage once warm-up, once counted (one reduce each)."""
    raw, first = recorded_message(args.batch_size)
    for stage in STAGES:
        measure(stage, raw, first, args.messages, repeats=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=20, help="entries per ALS message (default 20)")
    parser.add_argument("--messages", type=int, default=200, help="messages per timed run (default 200)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per stage; the best counts")
    parser.add_argument("--instructions", action="store_true", help="also count instructions (valgrind)")
    parser.add_argument("--counted-messages", type=int, default=20, help="messages per stage under valgrind")
    parser.add_argument("--counted-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.counted_run:
        counted_run(args)
        return 0
    if args.instructions and not shutil.which("valgrind"):
        parser.error("--instructions needs valgrind (apt-get install valgrind)")
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}, "
          f"{platform.machine()}; {args.batch_size} entries per message, best of {args.repeats} x "
          f"{args.messages} messages")
    raw, first = recorded_message(args.batch_size)
    entries = args.messages * args.batch_size
    timed = {stage: measure(stage, raw, first, args.messages, args.repeats) / entries * 1e6 for stage in STAGES}
    counted = count_instructions(args) if args.instructions else {}
    print("| stage | µs per entry (best) | instructions per entry | added to |")
    print("|---|---|---|---|")
    for stage in STAGES:
        ins = counted.get(stage)
        base = BASES.get(stage)
        added = "-"
        if ins is not None:
            added = f"+{ins - counted.get(base, 0.0):,.0f} on {base}" if base else ""
        print(f"| {stage} | {timed[stage]:.2f} | {f'{ins:,.0f}' if ins is not None else '-'} | {added} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
