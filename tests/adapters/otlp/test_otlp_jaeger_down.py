"""Jaeger stopped for 60 s under steady traffic, then started again: every span the mixer accepted
is either in Jaeger afterwards or counted as dropped by reason, and the two add up.

Real parts: ``mixer serve`` on the default tracing config, a real Jaeger v2 (built into the cache
when missing) keeping spans on disk (badger) so that a restart loses nothing it stored, and a
client sending OTLP export requests to the mixer at a steady rate. This test takes ~90 s on purpose.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from mixer.thirdparty import JaegerServer, ensure
from tests.proxy.support import MixerProcess, tracing_config, wait_until

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SERVICE = "steady"
DOWNTIME = 60.0
# Retries must outlast the downtime, the queue must hold it: 50 spans/s x 60 s = 3000 spans.
DELIVERY = ("{batchTimeout: 200ms, queueSize: 20000, timeout: 2s, "
            "retry: {initialInterval: 250ms, maxInterval: 2s, maxElapsedTime: 5m}}")


class DiskJaeger(JaegerServer):
    """Jaeger storing spans with badger in its work folder, so that a restart keeps them."""

    def config_text(self) -> str:
        config = yaml.safe_load(super().config_text())
        storage = self.workdir / "badger"
        config["extensions"]["jaeger_storage"]["backends"]["memstore"] = {
            "badger": {"directories": {"keys": str(storage / "keys"), "values": str(storage / "values")},
                       "ephemeral": False}
        }
        return str(yaml.safe_dump(config, sort_keys=False))


class SteadyClient:
    """Sends one export request of ``per_request`` spans every ``interval`` seconds until stopped,
    counting the spans the mixer accepted (a refused or failed call is counted apart)."""

    def __init__(self, port: int, per_request: int = 5, interval: float = 0.1) -> None:
        self.port = port
        self.per_request = per_request
        self.interval = interval
        self.accepted = 0
        self.failed = 0
        self.trace_ids: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-client", daemon=True)

    def _request(self, n: int) -> tuple[trace_service_pb2.ExportTraceServiceRequest, str]:
        trace_id = n.to_bytes(16, "big")
        request = trace_service_pb2.ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.add(key="service.name", value=common_pb2.AnyValue(string_value=SERVICE))
        scope_spans = resource_spans.scope_spans.add()
        now = time.time_ns()
        for i in range(self.per_request):
            span = scope_spans.spans.add(trace_id=trace_id, span_id=(i + 1).to_bytes(8, "big"), name="op",
                                         kind=trace_pb2.Span.SPAN_KIND_SERVER, start_time_unix_nano=now - 1_000_000,
                                         end_time_unix_nano=now)
            if i:
                span.parent_span_id = (1).to_bytes(8, "big")
        return request, trace_id.hex()

    def _run(self) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            export = channel.unary_unary(EXPORT)
            n = 0
            next_at = time.monotonic()
            while not self._stop.is_set():
                n += 1
                request, trace_id = self._request(n)
                try:
                    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(
                        export(request.SerializeToString(), timeout=5))
                    self.accepted += self.per_request - answer.partial_success.rejected_spans
                    self.trace_ids.add(trace_id)
                except grpc.RpcError:
                    self.failed += self.per_request
                next_at += self.interval
                self._stop.wait(max(next_at - time.monotonic(), 0))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def handler_counts(mixer: MixerProcess) -> tuple[float, dict[str, float], float]:
    """(sent, dropped by reason, queue depth) of the otlp handler, from the mixer's /metrics."""
    text = mixer.metrics()
    handler = 'handler="otlp.handler.istio-system"'

    def value(line: str) -> float:
        return float(line.rsplit(" ", 1)[1])

    sent = sum(value(line) for line in text.splitlines()
               if line.startswith("mixer_sent_instances_total{") and handler in line)
    dropped = {re.search(r'reason="([^"]+)"', line).group(1): value(line)  # type: ignore[union-attr]
               for line in text.splitlines() if line.startswith("mixer_dropped_instances_total{") and handler in line}
    depth = sum(value(line) for line in text.splitlines()
                if line.startswith("mixer_queue_depth{") and handler in line)
    return sent, dropped, depth


def spans_in_jaeger(jaeger: DiskJaeger, trace_ids: set[str]) -> int:
    """Spans Jaeger stores for the client's traces (its API writes ids without leading zeros)."""
    wanted = {int(trace_id, 16) for trace_id in trace_ids}
    found = jaeger.traces(SERVICE, limit=100_000, lookback="2h")
    return sum(len(t["spans"]) for t in found if int(t["traceID"], 16) in wanted)  # a duplicate would count twice


@pytest.mark.timeout(600)
def test_jaeger_down_for_a_minute_loses_nothing_uncounted(tmp_path: Path) -> None:
    binary = ensure("jaeger")  # built once into the cache when missing (minutes when cold)
    jaeger = DiskJaeger(binary, tmp_path / "jaeger")
    jaeger.start()
    jaeger.wait_ready()
    mixer = MixerProcess(tmp_path, extra_args=())
    (tmp_path / "tracing.yaml").write_text(tracing_config(jaeger.otlp_grpc_endpoint, DELIVERY))
    mixer.config = tmp_path / "tracing.yaml"  # the default tracing config alone
    client: SteadyClient | None = None
    try:
        mixer.start()
        client = SteadyClient(mixer.grpc_port)
        client.start()
        wait_until(lambda: spans_in_jaeger(jaeger, client.trace_ids) > 0 if client else None, timeout=30,
                   what="the first spans in Jaeger")
        jaeger.stop()
        down_at = time.monotonic()
        time.sleep(DOWNTIME / 2)
        sent_while_down, dropped_while_down, depth_while_down = handler_counts(mixer)
        assert depth_while_down > 0  # spans are waiting for Jaeger, not lost
        time.sleep(max(DOWNTIME - (time.monotonic() - down_at), 0))
        jaeger.start()
        jaeger.wait_ready()
        time.sleep(5)  # traffic goes on after the restart too
        client.stop()
        assert client.failed == 0  # the mixer itself kept answering

        def settled() -> tuple[float, dict[str, float]] | None:
            sent, dropped, depth = handler_counts(mixer)
            return (sent, dropped) if depth == 0 and sent + sum(dropped.values()) == client.accepted else None

        sent, dropped = wait_until(settled, timeout=60, what="the otlp handler's queue drained")
        stored = wait_until(lambda: (lambda n: n if n >= sent else None)(spans_in_jaeger(jaeger, client.trace_ids)),
                            timeout=60, what=f"{sent:.0f} spans in Jaeger")
        assert set(dropped) <= {"queue_full", "retries_exhausted", "permanent_error", "shutdown", "sampled_out",
                                "invalid_instance"}
        assert stored == sent  # what the handler delivered is what Jaeger has: nothing twice, nothing lost
        assert stored + sum(dropped.values()) == client.accepted
        assert client.accepted >= 50 * (DOWNTIME + 5)  # the traffic was steady throughout
        assert sent_while_down < client.accepted  # some spans did wait out the downtime
        assert not sum(dropped_while_down.values()) and not sum(dropped.values())  # the queue held a minute
    finally:
        if client is not None:
            client.stop()
        mixer.stop()
        jaeger.stop()
