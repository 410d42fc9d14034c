"""Spans/s through the OTLP front door, the default tracing rule and the otlp adapter into a loopback
OTLP receiver, on one core; baseline in the same run: decoding the same export requests alone.

The mixer's part runs in this process, pinned to one core: the gRPC listener with the OTLP door,
the runtime on ``mixer/defaultconfig/istio-tracing.yaml`` (its otlp handler pointed at the receiver,
with a queue large enough that nothing is dropped), and the adapter's senders. A client process
sends pre-built export requests (``--spans-per-request`` Envoy-like spans each, ``--concurrency``
calls in flight) over gRPC; a receiver process answers each export with success. Timed from the
first request until the adapter has every span acknowledged by the receiver; the CPU seconds this
process spent in that time are reported too (spans per CPU-second is the one-core figure).

With ``--stages``, also where a span's CPU time goes, in this process without gRPC (best of
``--repeats``): decoding (the door's reading of the request), mapping to bags, the rules and
instances (the config's handler replaced by the core's noop), and the otlp adapter's encoding of
those instances (as ``OtlpHandler.handle_tracespan`` and ``send`` do, without the queue).

With ``--peer``, also the same requests through the OpenTelemetry Collector (Go, built into the
cache folder when missing) passing them straight from its otlp receiver to its otlp exporter into the
same kind of receiver, pinned to the same core: what a compiled OTLP pass-through that evaluates no
rules costs per span on this machine, for scale.

    .venv/bin/python bench/traces.py [--spans 200000] [--spans-per-request 100] [--concurrency 8]
                                     [--stages] [--repeats 3] [--peer]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.otlp import OtlpHandler  # noqa: E402
from adapters.otlp.convert import span_ids, traces_request, tracespan_to_span  # noqa: E402
from mixer.frontdoors.otlp_wire import ExportTraceServiceRequest as WireRequest  # noqa: E402
from mixer.frontdoors.span_attributes import otlp_span_bag, resource_base_bag  # noqa: E402
from mixer.frontdoors import FrontDoorOptions, GrpcListener, standard_doors  # noqa: E402
from mixer.processes import free_port, start, stop, wait_for_port  # noqa: E402
from mixer.runtime import Runtime  # noqa: E402
from mixer import thirdparty  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from procstat import cpu_seconds, pin_threads  # noqa: E402 - a sibling bench module

TRACING = ROOT / "mixer" / "defaultconfig" / "istio-tracing.yaml"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _kv(key: str, value: str) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


# The sidecar generator's resource attributes (proxy/bootstrap.py, ``_tracing``): each sidecar's own
# identity, and the service an outbound listener calls, sent once per export.
_CATALOG = {"destination.service.name": "catalog", "destination.service.namespace": "default",
            "destination.service.host": "catalog.default.svc.cluster.local"}
_RESOURCES = {
    "frontend": {"source.workload.name": "frontend-v1", "source.workload.namespace": "default",
                 "source.labels": '{"app": "frontend", "version": "v1"}', **_CATALOG},
    "catalog": {"destination.workload.name": "catalog-v1", "destination.workload.namespace": "default",
                "destination.labels": '{"app": "catalog", "version": "v1"}', **_CATALOG},
}


def envoy_like_requests(spans: int, per_request: int, seed: int = 7) -> list[bytes]:
    """Export requests shaped like the generated sidecars': a client span (the caller's sidecar) and a
    server span (the callee's) per request hop, with Envoy's tags and the peer's identity headers,
    under a resource carrying the sidecar's own identity."""
    rng = random.Random(seed)
    requests: list[bytes] = []
    made = 0
    while made < spans:
        request = trace_service_pb2.ExportTraceServiceRequest()
        for service, kind in (("frontend", trace_pb2.Span.SPAN_KIND_CLIENT), ("catalog", trace_pb2.Span.SPAN_KIND_SERVER)):
            resource_spans = request.resource_spans.add()
            resource_spans.resource.attributes.append(_kv("service.name", service))
            resource_spans.resource.attributes.extend(_kv(k, v) for k, v in _RESOURCES[service].items())
            peer = "catalog-v1" if kind == trace_pb2.Span.SPAN_KIND_CLIENT else "frontend-v1"
            scope_spans = resource_spans.scope_spans.add()
            for _ in range(per_request // 2):
                start_ns = 1_790_000_000_000_000_000 + rng.randrange(10**12)
                span = scope_spans.spans.add(
                    trace_id=rng.randbytes(16), span_id=rng.randbytes(8), parent_span_id=rng.randbytes(8),
                    name="ingress" if kind == trace_pb2.Span.SPAN_KIND_SERVER else "egress catalog:9080", kind=kind,
                    start_time_unix_nano=start_ns, end_time_unix_nano=start_ns + rng.randrange(1, 50_000_000),
                )
                span.attributes.extend([
                    _kv("node_id", f"{service}-v1.default"), _kv("zone", ""),
                    _kv("guid:x-request-id", f"{rng.getrandbits(128):032x}"),
                    _kv("http.url", f"http://catalog:9080/items/{rng.randrange(100)}"), _kv("http.method", "GET"),
                    _kv("downstream_cluster", "frontend"), _kv("user_agent", "python-urllib/3.11"),
                    _kv("http.protocol", "HTTP/1.1"), _kv("peer.address", "127.0.0.1"), _kv("request_size", "0"),
                    _kv("response_size", str(rng.randrange(2000))), _kv("component", "proxy"),
                    _kv("upstream_cluster", "inbound_9080"), _kv("http.status_code", rng.choice(["200"] * 9 + ["503"])),
                    _kv("response_flags", "-"),
                    _kv("x-mixer-workload", peer), _kv("x-mixer-namespace", "default"),
                ])
        made += 2 * (per_request // 2)
        requests.append(bytes(request.SerializeToString()))
    return requests


def decode_only(requests: list[bytes]) -> tuple[int, float, float]:
    """The baseline: parse every request and walk its spans; (spans, wall seconds, CPU seconds)."""
    started, cpu = time.perf_counter(), time.process_time()
    count = 0
    for raw in requests:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(raw)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    count += len(span.attributes) > 0
    return count, time.perf_counter() - started, time.process_time() - cpu


RECEIVER = """
import asyncio, os, sys, grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
async def main(port, count_file=None):
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    received = 0
    async def export(raw, context):
        nonlocal received
        if count_file:  # the peer run: its completion is told by the spans that arrived
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(raw)
            received += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            with open(count_file + ".tmp", "w") as out:
                out.write(str(received))
            os.replace(count_file + ".tmp", count_file)
        return b""  # an empty ExportTraceServiceResponse: everything accepted
    handler = grpc.unary_unary_rpc_method_handler(export)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()
asyncio.run(main(int(sys.argv[1]), *sys.argv[2:]))
"""

CLIENT = """
import asyncio, sys, grpc
sys.path.insert(0, sys.argv[1])
from bench.traces import envoy_like_requests, EXPORT
async def main(port, spans, per_request, concurrency):
    requests = envoy_like_requests(spans, per_request)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        export = channel.unary_unary(EXPORT)
        await channel.channel_ready()
        print("ready", flush=True)
        sys.stdin.readline()  # go
        queue = list(reversed(requests))
        async def worker():
            while queue:
                await export(queue.pop())
        await asyncio.gather(*(worker() for _ in range(concurrency)))
asyncio.run(main(*map(int, sys.argv[2:])))
"""


async def through_the_mixer(args: argparse.Namespace, workdir: Path) -> tuple[int, float, float]:
    """(spans delivered, wall seconds, CPU seconds of this process)."""
    receiver_port, mixer_port = free_port(), free_port()
    config = TRACING.read_text().replace("endpoint: 127.0.0.1:4317", f"endpoint: 127.0.0.1:{receiver_port}")
    config = config.replace("    samplingRatio: 1.0", "    samplingRatio: 1.0\n    delivery: {queueSize: 1000000}")
    (workdir / "tracing.yaml").write_text(config)
    receiver = start([sys.executable, "-c", RECEIVER, str(receiver_port)], workdir / "receiver.log")
    runtime = await Runtime.load([workdir / "tracing.yaml"])
    options = FrontDoorOptions(port=mixer_port)
    listener = GrpcListener(runtime, standard_doors(runtime, options), options)
    await listener.start()
    client = None
    try:
        wait_for_port(receiver_port, 30, receiver)
        handler = runtime.snapshot.slots["otlp.handler.istio-system"].handler
        assert isinstance(handler, OtlpHandler)
        client = await _ready_client(mixer_port, args)
        cpu, wall = time.process_time(), time.perf_counter()
        await _go(client)
        queue = handler.queue
        while queue.sent + sum(queue.dropped.values()) < args.spans:
            await asyncio.sleep(0.01)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert not any(queue.dropped.values()), queue.dropped
        assert await client.wait() == 0
        return queue.sent, wall, cpu
    finally:
        if client is not None and client.returncode is None:
            client.kill()
        await listener.stop()
        await runtime.close()
        stop(receiver)


async def _ready_client(port: int, args: argparse.Namespace) -> asyncio.subprocess.Process:
    """The client process, connected to ``port`` with its requests built, waiting for ``_go``."""
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(ROOT), str(port), str(args.spans), str(args.spans_per_request),
        str(args.concurrency), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert client.stdout is not None
    assert (await client.stdout.readline()).strip() == b"ready"
    return client


async def _go(client: asyncio.subprocess.Process) -> None:
    assert client.stdin is not None
    client.stdin.write(b"go\n")
    await client.stdin.drain()


async def through_the_peer(args: argparse.Namespace, workdir: Path) -> tuple[int, float, float] | str:
    """The same requests through the OpenTelemetry Collector, a compiled (Go) OTLP pass-through: its
    otlp receiver straight to its otlp exporter into the same receiver, no processing, the collector
    pinned to the mixer's core. (spans delivered, wall seconds, the collector's CPU seconds), or why
    it could not run."""
    try:
        binary = thirdparty.ensure("otelcol")
    except thirdparty.BuildError as exc:
        return f"the collector could not be built: {exc}"
    receiver_port, count_file = free_port(), workdir / "received"
    receiver = start([sys.executable, "-c", RECEIVER, str(receiver_port), str(count_file)], workdir / "receiver.log")
    extra = {
        "exporters": {"otlp/out": {"endpoint": f"127.0.0.1:{receiver_port}", "tls": {"insecure": True},
                                   "sending_queue": {"queue_size": 1_000_000}}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp/out"]}}},
    }
    collector = thirdparty.CollectorServer(binary, workdir / "otelcol", extra=extra)
    client = None
    try:
        collector.start()
        collector.wait_ready()
        wait_for_port(receiver_port, 30, receiver)
        assert collector.pid
        pin_threads(collector.pid, os.sched_getaffinity(0))  # this process's one core (main)
        client = await _ready_client(collector.ports["otlp_grpc"], args)
        cpu, wall = cpu_seconds(collector.pid), time.perf_counter()
        await _go(client)
        received, progress_at = 0, time.monotonic()
        while received < args.spans:
            await asyncio.sleep(0.01)
            now_received = int(count_file.read_text()) if count_file.exists() else 0
            if now_received > received:
                received, progress_at = now_received, time.monotonic()
            elif time.monotonic() - progress_at > 30:  # the collector dropped some: say so, do not hang
                return f"only {received} of {args.spans} spans arrived; the collector's log: {collector.log_tail()}"
        wall, cpu = time.perf_counter() - wall, cpu_seconds(collector.pid) - cpu
        assert await client.wait() == 0
        return received, wall, cpu
    finally:
        if client is not None and client.returncode is None:
            client.kill()
        collector.stop()
        stop(receiver)


def _stage_config(workdir: Path, adapter: str) -> Path:
    """The tracing config with its handler replaced by ``adapter`` (noop, or memory to keep the instances)."""
    params = "{maxInstances: 100000}" if adapter == "memory" else "{}"
    config = TRACING.read_text().replace("compiledAdapter: otlp", f"compiledAdapter: {adapter}")
    head, _, rest = config.partition("  params:\n    protocol: grpc")
    rest = rest.split("\n---", 1)[1]
    path = workdir / f"{adapter}.yaml"
    path.write_text(f"{head}  params: {params}\n---{rest}")
    return path


async def stage_costs(requests: list[bytes], repeats: int) -> dict[str, float]:
    """CPU microseconds per span of each stage, best of ``repeats``, in this process."""
    with tempfile.TemporaryDirectory(prefix="bench-traces-stages-") as tmp:
        noop = await Runtime.load([_stage_config(Path(tmp), "noop")])
        memory = await Runtime.load([_stage_config(Path(tmp), "memory")])
    manifest = noop.manifest
    capture = memory.snapshot.slots["otlp.handler.istio-system"].handler
    pending: list[Any] = []
    spans = 0
    best = dict.fromkeys(("decode", "bags", "rules -> noop", "otlp encode"), float("inf"))
    for _ in range(repeats):
        # Request by request, as the door works: what a request leaves behind is garbage at once
        # (holding every bag of the run would make the collector's passes a cost of their own).
        took = dict.fromkeys(best, 0.0)
        spans = 0
        for raw in requests:
            started = time.process_time()
            request = WireRequest.FromString(raw)
            decoded = time.process_time()
            batch = []
            for resource_spans in request.resource_spans:
                base = resource_base_bag(resource_spans.resource, manifest)
                for scope_spans in resource_spans.scope_spans:
                    batch.extend(otlp_span_bag(span, base, manifest) for span in scope_spans.spans)
            mapped = time.process_time()
            noop.report(batch)
            reported = time.process_time()
            memory.report(batch)  # the same instances, kept for the encoding below (not timed)
            instances = list(capture.instances)  # type: ignore[attr-defined]
            capture.instances.clear()  # type: ignore[attr-defined]
            encoding = time.process_time()
            pending.extend(tracespan_to_span(i.fields, span_ids(i.fields)) for i in instances)
            if len(pending) >= 512:  # the push queue's batch
                traces_request(pending)
                pending.clear()
            encoded = time.process_time()
            spans += len(batch)
            for stage, seconds in zip(took, (decoded - started, mapped - decoded, reported - mapped, encoded - encoding)):
                took[stage] += seconds
        best = {stage: min(best[stage], took[stage]) for stage in best}
    await noop.close()
    await memory.close()
    return {stage: seconds / spans * 1e6 for stage, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--spans-per-request", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--stages", action="store_true", help="also time each stage in process")
    parser.add_argument("--repeats", type=int, default=3, help="--stages: best of this many runs")
    parser.add_argument("--peer", action="store_true",
                        help="also the same requests through the OpenTelemetry Collector (built when missing)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"mixer pinned to 1 core, load average {os.getloadavg()[0]:.1f}")
    requests = envoy_like_requests(args.spans, args.spans_per_request)
    spans, seconds, decode_cpu = decode_only(requests)
    print(f"decode only: {spans} spans in {seconds:.3f}s = {spans / seconds:,.0f} spans/s (wall), "
          f"{spans / decode_cpu:,.0f} spans per CPU-second")
    with tempfile.TemporaryDirectory(prefix="bench-traces-") as workdir:
        sent, wall, cpu = asyncio.run(through_the_mixer(args, Path(workdir)))
    print(f"door + rules + otlp adapter -> receiver: {sent} spans in {wall:.3f}s = {sent / wall:,.0f} spans/s "
          f"(wall), {sent / cpu:,.0f} spans per CPU-second of the mixer ({cpu:.3f}s CPU)")
    print(f"ratio decode-only / full path: {(spans / seconds) / (sent / wall):.1f}x wall, "
          f"{(spans / decode_cpu) / (sent / cpu):.1f}x CPU")
    if args.peer:
        with tempfile.TemporaryDirectory(prefix="bench-traces-peer-") as workdir:
            peer = asyncio.run(through_the_peer(args, Path(workdir)))
        if isinstance(peer, str):
            print(f"peer: not measured, {peer}")
        else:
            got, peer_wall, peer_cpu = peer
            print(f"peer, the OpenTelemetry Collector passing the spans through (no processing): {got} spans in "
                  f"{peer_wall:.3f}s = {got / peer_wall:,.0f} spans/s (wall), {got / peer_cpu:,.0f} spans per "
                  f"CPU-second of the collector ({peer_cpu:.3f}s CPU); the mixer's path costs "
                  f"{(got / peer_cpu) / (sent / cpu):.1f}x its CPU per span")
    if args.stages:
        costs = asyncio.run(stage_costs(requests[: max(len(requests) // 5, 1)], args.repeats))
        print("in process, CPU µs per span: " + ", ".join(f"{stage} {us:.1f}" for stage, us in costs.items())
              + f"; sum {sum(costs.values()):.1f} (the full path above: {cpu / sent * 1e6:.1f})")


if __name__ == "__main__":
    main()
