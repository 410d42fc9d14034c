"""What the mixer costs per mesh request, through real Envoy: vCPU per 1,000 requests/s, req/s, p50, p99.

wrk (8 connections) -> Envoy a-v1 (outbound sidecar) -> Envoy b-v1 (inbound sidecar) -> a trivial
upstream (a third Envoy answering 200 directly). Stacks, started once and measured in alternating
rounds so that drift on a shared machine hits each alike:

- ``plain``: the two Envoys with no ext_authz, no access log: the latency and CPU baseline;
- ``default``: the mixer on its default config (Istio 1.4's telemetry), sidecars as ``mixer sidecar``
  writes them (tracing off): ext_authz on the inbound listener, an access log on both; the config's
  ``otlp`` handler sends the spans it builds from access log entries to 127.0.0.1:4317, where nothing
  listens here, so its queue is full a few seconds in and the rest are counted dropped unbuilt;
- ``default-traced``: the same with the ``otlp`` handler pointed at a real OTLP receiver (the
  OpenTelemetry Collector: otlp receiver -> debug exporter, spans counted by its own metrics), so every span is
  built, encoded and sent. The receiver's CPU is given apart from the mixer's; at the end the spans it
  got plus the handler's counted drops are checked against the access log entries the mixer took in;
- ``deny``: the default config plus a denier rule "a-v1 may not call c-v1" (the traffic is a -> b);
- ``quota``: the default config plus a memquota quota every inbound request allocates (gRPC Check);
- ``quota-http``: the same, with the sidecar's ext_authz asking over plain HTTP (``--check-http-port``);
- ``telemetry``: the mixer with only Istio's metrics (the default config without its access log and
  its spans): the same output as the peer below, for a like-for-like comparison;
- ``otelcol``: the OpenTelemetry Collector peer computing Istio's four HTTP metrics (the same labels,
  from the same two access log records per request) for Prometheus: each sidecar's OpenTelemetry
  access logger -> otlp receiver -> signaltometrics connector -> deltatocumulative processor ->
  prometheus exporter. (The contrib
  Envoy ALS receiver, which would take the very stream the mixer takes, is not served by the Go module
  proxy here.) After the rounds its request count is checked against the requests answered.

The mixer's (or the collector's) CPU is read from /proc (the process and its descendants) over each
measured window, as are the two sidecars'. vCPU per 1,000 req/s = CPU seconds / window / (req/s / 1000).
Because CPU per request through Envoy varies by half from run to run here, each is also given as a
ratio to the two sidecars' own CPU over the same window (Istio 1.4's Mixer: 0.6x).

``--workers N`` runs the mixer with N processes, but here the Envoys and wrk saturate the machine
long before one mixer worker is: how ``--workers 2`` scales at saturation is
``bench/workers_scaling.py``'s (the access log door driven directly).

    .venv/bin/python bench/mesh_cost.py [--duration 5] [--rounds 3] [--only default,quota]
        [--static-bootstrap] [--workers N] [--log-buffer-bytes N] [--append]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mixer import thirdparty
from mixer.config import DEFAULT_CONFIG_DIR
from mixer.envoy_attributes.names import PEER_NAMESPACE_HEADER, PEER_WORKLOAD_HEADER
from mixer.processes import free_port, http_get, start, stop, wait_for_port
from proxy import EnvoyProcess, Inbound, Outbound, SidecarSpec, render_bootstrap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procstat import tree_cpu_seconds  # noqa: E402 - a sibling bench module

ROOT = Path(__file__).resolve().parents[1]

DENY_RULE = """\
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny-a-to-c, namespace: istio-system}
spec: {compiledAdapter: denier, params: {status: {code: 7, message: a-v1 may not call c-v1}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: denyrequest, namespace: istio-system}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: deny-a-to-c, namespace: istio-system}
spec:
  match: (source.workload.name | "") == "a-v1" && (destination.workload.name | "") == "c-v1"
  actions: [{handler: deny-a-to-c, instances: [denyrequest]}]
"""

QUOTA_RULE = """\
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: quota, namespace: istio-system}
spec:
  compiledAdapter: memquota
  params:
    quotas: [{name: requestquota.instance.istio-system, maxAmount: 1000000000, validDuration: 1h}]
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: requestquota, namespace: istio-system}
spec:
  compiledTemplate: quota
  params:
    dimensions:
      destination: destination.workload.name | "unknown"
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: quota-every-request, namespace: istio-system}
spec:
  actions: [{handler: quota, instances: [requestquota]}]
"""




# -- load -----------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    print("installing Debian's wrk ...", file=sys.stderr)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed: apt-get install wrk")
    return found


def wrk(port: int, seconds: float, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--latency",
         f"http://127.0.0.1:{port}/bench"],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps, out
    sent = re.search(r"(\d+) requests in", out)
    assert sent, out
    figures = {"rps": float(rps.group(1)), "requests": float(sent.group(1))}
    for label, key in (("50%", "p50"), ("99%", "p99")):
        match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        figures[key] = float(match.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[match.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    figures["non2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    return figures


# -- the stacks -----------------------------------------------------------------------------------


def upstream_bootstrap(port: int) -> dict[str, Any]:
    """The trivial upstream: an Envoy answering 200 "ok" itself."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "upstream",
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}]}]},
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [{
            "name": "upstream", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}],
        }]},
    }


def plain(bootstrap: dict[str, Any]) -> dict[str, Any]:
    """A sidecar bootstrap without the mixer: no ext_authz, rate limit or access log."""
    for listener in bootstrap["static_resources"]["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        hcm.pop("access_log", None)
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.router"]
        for host in hcm["route_config"]["virtual_hosts"]:
            for route in host["routes"]:
                route.pop("typed_per_filter_config", None)
    return bootstrap


DEFAULT_OTLP_ENDPOINT = "endpoint: 127.0.0.1:4317"  # the otlp handler's, as the default config ships it


# The default config's files that are not Istio's metrics: left out of the ``telemetry`` stack.
NOT_METRICS = ("istio-accesslog.yaml", "istio-tracing.yaml")


def mixer_config(workdir: Path, extra: str, otlp_endpoint: str = "", metrics_only: bool = False) -> Path:
    """The default config (its Prometheus handler on a free loopback port; its otlp handler sending to
    ``otlp_endpoint`` when given; only Istio's metrics with ``metrics_only``) plus ``extra``."""
    folder = workdir / "config"
    folder.mkdir()
    for source in sorted(Path(DEFAULT_CONFIG_DIR).glob("*.yaml")):
        if metrics_only and source.name in NOT_METRICS:
            continue
        text = source.read_text()
        if "compiledAdapter: prometheus" in text:
            text = text.replace("  params:\n", f"  params:\n    address: 127.0.0.1:{free_port()}\n", 1)
        if otlp_endpoint and "compiledAdapter: otlp" in text:
            if DEFAULT_OTLP_ENDPOINT not in text:
                raise SystemExit(f"{source}: no '{DEFAULT_OTLP_ENDPOINT}' to point at the receiver")
            text = text.replace(DEFAULT_OTLP_ENDPOINT, f"endpoint: {otlp_endpoint}", 1)
        (folder / source.name).write_text(text)
    if extra:
        (folder / "extra.yaml").write_text(extra)
    return folder


@dataclass
class Stack:
    """One configuration: a mixer (or collector, or nothing) and the two sidecars in front of it."""

    name: str
    entry_port: int  # a-v1's outbound listener for b
    sidecars: list[EnvoyProcess]
    collector_pid: int | None  # the mixer's or collector's process (its descendants count too)
    receiver: SpanReceiver | None = None  # where the mixer's spans go, measured apart
    peer_metrics_url: str = ""  # the collector peer's Prometheus endpoint
    runs: list[dict[str, float]] = field(default_factory=list)
    requests_sent: float = 0.0  # answered requests, warm-up included

    def drive(self, seconds: float, connections: int) -> dict[str, float]:
        figures = wrk(self.entry_port, seconds, connections)
        self.requests_sent += figures["requests"]
        return figures

    def measure(self, seconds: float, connections: int) -> dict[str, float]:
        def cpu() -> tuple[float, float, float]:
            envoys = sum(tree_cpu_seconds(e.pid or 0) for e in self.sidecars)
            receiver = tree_cpu_seconds(self.receiver.pid) if self.receiver else 0.0
            return envoys, tree_cpu_seconds(self.collector_pid) if self.collector_pid else 0.0, receiver

        envoys0, collector0, receiver0 = cpu()
        started = time.monotonic()
        figures = self.drive(seconds, connections)
        elapsed = time.monotonic() - started
        envoys1, collector1, receiver1 = cpu()
        kilo_rps = figures["rps"] / 1000
        figures["envoy_vcpu_per_krps"] = (envoys1 - envoys0) / elapsed / kilo_rps
        figures["vcpu_per_krps"] = (collector1 - collector0) / elapsed / kilo_rps
        figures["ratio"] = (collector1 - collector0) / max(envoys1 - envoys0, 1e-9)
        if self.receiver:
            figures["receiver_vcpu_per_krps"] = (receiver1 - receiver0) / elapsed / kilo_rps
            figures["receiver_ratio"] = (receiver1 - receiver0) / max(envoys1 - envoys0, 1e-9)
        return figures


def sidecar_specs(mixer_port: int, b_port: int, a_port: int, upstream_port: int, quotas: tuple[str, ...],
                  discovery: bool, log_buffer: int = 16384, check_http_port: int = 0) -> list[SidecarSpec]:
    common: dict[str, Any] = {"mixer_port": mixer_port, "tracing": False, "log_buffer_bytes": log_buffer,
                              "check_http_port": check_http_port}
    if discovery:
        common["policy_discovery"] = True
    return [
        SidecarSpec(workload="a-v1", outbound=(Outbound("b", a_port, "127.0.0.1", b_port),), **common),
        SidecarSpec(workload="b-v1", inbound=(Inbound(b_port, upstream_port),), quotas=quotas, **common),
    ]


def start_envoys(bootstraps: dict[str, dict[str, Any]], workdir: Path, stack: ExitStack) -> list[EnvoyProcess]:
    envoys = []
    for name, bootstrap in bootstraps.items():
        path = workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(bootstrap))
        envoy = EnvoyProcess(path, log_path=workdir / f"{name}.log")
        envoy.start()
        stack.callback(envoy.close)
        envoys.append(envoy)
    for envoy in envoys:
        envoy.wait_ready()
    return envoys


def start_mixer(workdir: Path, extra: str, workers: int, stack: ExitStack, check_http_port: int = 0,
                otlp_endpoint: str = "", metrics_only: bool = False) -> tuple[int, int, int]:
    """``mixer serve`` on the default config plus ``extra``; returns (gRPC port, HTTP port, its PID)."""
    grpc_port, http_port = free_port(), free_port()
    config = mixer_config(workdir, extra, otlp_endpoint, metrics_only)
    proc = start([sys.executable, "-m", "mixer.cli", "serve", "--config", str(config),
                  "--port", str(http_port), "--grpc-port", str(grpc_port), "--watch-interval", "1",
                  "--log-level", "WARNING", "--trust-peer-headers", "--workers", str(workers),
                  "--check-http-port", str(check_http_port)],
                 log_path=str(workdir / "mixer.log"), cwd=str(ROOT))
    stack.callback(stop, proc)
    wait_for_port(grpc_port, 60, proc)
    return grpc_port, http_port, proc.pid


def build_stack(name: str, args: argparse.Namespace, upstream_port: int, workdir: Path,
                stack: ExitStack) -> Stack | str:
    """The stack for ``name``, or why it cannot be had."""
    workdir.mkdir()
    a_port, b_port = free_port(), free_port()
    discovery = not args.static_bootstrap
    if name == "plain":
        specs = sidecar_specs(9, b_port, a_port, upstream_port, (), False)
        envoys = start_envoys({s.workload: plain(render_bootstrap(s)) for s in specs}, workdir, stack)
        return Stack(name, a_port, envoys, None)
    if name == "otelcol":
        return start_collector_stack(args, upstream_port, workdir, stack, a_port, b_port)
    base, _, variant = name.partition("-")
    extra = {"default": "", "telemetry": "", "deny": DENY_RULE, "quota": QUOTA_RULE}[base]
    quotas = ("requestquota",) if base == "quota" else ()
    check_http_port = free_port() if variant == "http" else 0
    receiver = start_span_receiver(workdir, stack) if variant == "traced" else None
    if isinstance(receiver, str):
        return receiver
    grpc_port, http_port, pid = start_mixer(workdir, extra, args.workers, stack, check_http_port,
                                            receiver.otlp_endpoint if receiver else "",
                                            metrics_only=base == "telemetry")
    if receiver:
        receiver.mixer_port = http_port
    if check_http_port:
        wait_for_port(check_http_port, 30)
    specs = sidecar_specs(grpc_port, b_port, a_port, upstream_port, quotas, discovery, args.log_buffer_bytes,
                          check_http_port)
    envoys = start_envoys({s.workload: render_bootstrap(s) for s in specs}, workdir, stack)
    return Stack(name, a_port, envoys, pid, receiver)


def telemetry_only(bootstrap: dict[str, Any]) -> dict[str, Any]:
    """A sidecar bootstrap that only sends access logs: no ext_authz, no rate limit."""
    for listener in bootstrap["static_resources"]["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.router"]
    return bootstrap


# Istio 1.4's four HTTP metrics, with their labels, as the peer computes them from each access log
# record (one from each sidecar, as the mixer gets them). The sidecars put every label on the record
# as an attribute (``peer_attributes``); byte and duration values arrive as text.
PEER_LABELS = ("reporter", "source_workload", "source_workload_namespace", "source_app", "source_version",
               "destination_workload", "destination_workload_namespace", "destination_app",
               "destination_version", "destination_service", "destination_service_name",
               "destination_service_namespace", "request_protocol", "response_code", "response_flags")
_PEER_BUCKETS = {
    "duration": [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],  # seconds, as Istio 1.4's
    "bytes": [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000],
}


# A record missing a label still counts, under "unknown" (as Istio's instances default them).
_PEER_ATTRIBUTES = [{"key": label, "default_value": "unknown"} for label in PEER_LABELS]


def _peer_histogram(name: str, description: str, kind: str, value: str) -> dict[str, Any]:
    return {"name": name, "description": description, "attributes": _PEER_ATTRIBUTES,
            "histogram": {"count": "1", "value": value, "buckets": _PEER_BUCKETS[kind]}}


# The histograms and the request count come from the signaltometrics connector. It emits deltas, which
# the prometheus exporter does not add up (a scrape would show the last few seconds only): the
# deltatocumulative processor does. Its sums are not monotonic, so istio_requests_total is exposed as
# a gauge; the count connector, which makes a counter, lost ~0.5% of the records on their way through
# deltatocumulative in this build (0.161.0), so it is not used.
PEER_METRICS = [
    {"name": "istio_requests_total", "description": "requests", "attributes": _PEER_ATTRIBUTES, "sum": {"value": "1"}},
    _peer_histogram("istio_request_duration_seconds", "request duration", "duration",
                    'Double(attributes["duration_ms"]) / 1000.0'),
    _peer_histogram("istio_request_bytes", "request size", "bytes", 'Double(attributes["request_bytes"])'),
    _peer_histogram("istio_response_bytes", "response size", "bytes", 'Double(attributes["response_bytes"])'),
]


def peer_attributes(spec: SidecarSpec, direction: str) -> dict[str, str]:
    """What one sidecar's OpenTelemetry access logger puts on each record: Istio's labels, from its own
    identity, the route's destination and the peer's identity headers (as the mixer reads them with
    ``--trust-peer-headers``), and the values the histograms need."""
    own = {"workload": spec.workload, "workload_namespace": spec.namespace,
           "app": spec.effective_labels().get("app", ""), "version": spec.effective_labels().get("version", "")}
    header = "%REQ({})%" if direction == "inbound" else "%RESP({})%"
    peer = {"workload": header.format(PEER_WORKLOAD_HEADER), "workload_namespace": header.format(PEER_NAMESPACE_HEADER),
            "app": "unknown", "version": "unknown"}
    if direction == "inbound":
        service, sides = spec.service_name, {"source": peer, "destination": own}
        reporter = "destination"
    else:
        service, sides = spec.outbound[0].service, {"source": own, "destination": peer}
        reporter = "source"
    names = {f"{side}_{key}": value for side, values in sides.items() for key, value in values.items()}
    return {
        "reporter": reporter, **names,
        "destination_service": f"{service}.{spec.namespace}.svc.cluster.local",
        "destination_service_name": service, "destination_service_namespace": spec.namespace,
        "request_protocol": "%PROTOCOL%", "response_code": "%RESPONSE_CODE%", "response_flags": "%RESPONSE_FLAGS%",
        "duration_ms": "%DURATION%", "request_bytes": "%BYTES_RECEIVED%", "response_bytes": "%BYTES_SENT%",
    }


def otel_access_log(bootstrap: dict[str, Any], spec: SidecarSpec) -> dict[str, Any]:
    """``telemetry_only``, with each HTTP listener's access log sent by Envoy's OpenTelemetry access
    logger (OTLP logs over gRPC to the cluster the mixer's would use) instead of the gRPC ALS."""
    bootstrap = telemetry_only(bootstrap)
    for listener in bootstrap["static_resources"]["listeners"]:
        direction = listener["traffic_direction"].lower()
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        common = hcm["access_log"][0]["typed_config"]["common_config"]
        hcm["access_log"] = [{
            "name": "envoy.access_loggers.open_telemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig",
                **{k: common[k] for k in ("log_name", "grpc_service", "buffer_flush_interval", "buffer_size_bytes")},
                "attributes": {"values": [{"key": k, "value": {"string_value": v}}
                                          for k, v in peer_attributes(spec, direction).items()]},
            },
        }]
    return bootstrap


def start_collector_stack(args: argparse.Namespace, upstream_port: int, workdir: Path, stack: ExitStack,
                          a_port: int, b_port: int) -> Stack | str:
    """The OpenTelemetry Collector peer: Envoy's OpenTelemetry access logger -> otlp receiver ->
    signaltometrics connector (Istio's four HTTP metrics) -> deltatocumulative processor ->
    prometheus exporter.

    The collector-contrib's Envoy ALS receiver (``envoyalsreceiver``), which would take the very
    stream the mixer takes, is not served by the Go module proxy here; Envoy's own OTLP access logger
    carries the same records to the collector's standard receiver instead."""
    try:
        binary = thirdparty.ensure("otelcol")
    except thirdparty.BuildError as exc:
        return f"the collector could not be built: {exc}"
    components = subprocess.run([str(binary), "components"], capture_output=True, text=True, timeout=60).stdout
    if not all(name in components for name in ("signaltometrics", "deltatocumulative", "prometheus")):
        return f"the collector build ({binary}) lacks a signaltometrics, deltatocumulative or prometheus component"
    prometheus_port = free_port()
    extra = {
        "connectors": {"signaltometrics": {"logs": PEER_METRICS}},
        "processors": {"deltatocumulative": {}},
        "exporters": {"prometheus/peer": {"endpoint": f"127.0.0.1:{prometheus_port}"}},
        # replaces the runner's own logs pipeline (otlp -> a JSON file), which the peer must not pay for
        "service": {"pipelines": {
            "logs": {"receivers": ["otlp"], "exporters": ["signaltometrics"]},
            "metrics/peer": {"receivers": ["signaltometrics"], "processors": ["deltatocumulative"],
                             "exporters": ["prometheus/peer"]}}},
    }
    collector = thirdparty.CollectorServer(binary, workdir / "otelcol", extra=extra)
    collector.start()
    stack.callback(collector.stop)
    collector.wait_ready()
    specs = sidecar_specs(collector.ports["otlp_grpc"], b_port, a_port, upstream_port, (), False,
                          args.log_buffer_bytes)
    envoys = start_envoys({s.workload: otel_access_log(render_bootstrap(s), s) for s in specs}, workdir, stack)
    return Stack("otelcol", a_port, envoys, collector.pid, peer_metrics_url=f"http://127.0.0.1:{prometheus_port}/metrics")


# -- the span receiver ---------------------------------------------------------------------------


# The receiver's pipeline: OTLP traces in, discarded by the debug exporter (one short log line per
# batch): the cheapest real OTLP backend. The collector's own metrics count what its receiver accepted.
SPAN_SINK_PIPELINE = {
    "exporters": {"debug/spans": {"verbosity": "basic"}},
    "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug/spans"]}}},
}
ACCEPTED_SPANS = re.compile(r"^otelcol_receiver_accepted_spans(?:_total)?(?:\{[^}]*\})? (\S+)$", re.M)


def metric_sum(url: str, pattern: re.Pattern[str]) -> float:
    """The sum of every sample ``pattern`` matches in the Prometheus text at ``url``."""
    answer = http_get(url, timeout=10)
    if answer is None or answer[0] != 200:
        raise RuntimeError(f"no metrics at {url}: {answer}")
    return sum(float(value) for value in pattern.findall(answer[1].decode()))


@dataclass
class SpanReceiver:
    """The collector the ``otlp`` handler sends to, and the two /metrics that account for the spans."""

    pid: int
    otlp_endpoint: str
    metrics_url: str  # the collector's own metrics: otelcol_receiver_accepted_spans_total
    mixer_port: int = 0  # the mixer's HTTP port (/metrics), set once it runs

    def accounting(self, handler: str = "otlp.handler.istio-system", timeout: float = 30.0) -> dict[str, float]:
        """Spans the receiver got, the handler sent and dropped, and the access log entries the mixer
        took in (the tracing rule builds one span from each), once the handler's queue has drained."""
        quoted = re.escape(f'"{handler}"')
        sent = re.compile(rf"^mixer_sent_instances_total\{{handler={quoted}\}} (\S+)$", re.M)
        dropped = re.compile(rf"^mixer_dropped_instances_total\{{handler={quoted},reason=\"[^\"]+\"\}} (\S+)$", re.M)
        entries = re.compile(r"^mixer_reports_total\{[^}]*\} (\S+)$", re.M)
        deadline = time.monotonic() + timeout
        while True:
            mixer = f"http://127.0.0.1:{self.mixer_port}/metrics"
            figures = {"received": metric_sum(self.metrics_url, ACCEPTED_SPANS), "sent": metric_sum(mixer, sent),
                       "dropped": metric_sum(mixer, dropped), "entries": metric_sum(mixer, entries)}
            settled = figures["received"] == figures["sent"] and figures["sent"] + figures["dropped"] == figures["entries"]
            if settled or time.monotonic() > deadline:
                return figures
            time.sleep(1)


def start_span_receiver(workdir: Path, stack: ExitStack) -> SpanReceiver | str:
    """The OpenTelemetry Collector counting the OTLP spans it receives, or why it cannot be had."""
    try:
        binary = thirdparty.ensure("otelcol")
    except thirdparty.BuildError as exc:
        return f"the collector could not be built: {exc}"
    collector = thirdparty.CollectorServer(binary, workdir / "otelcol", extra=SPAN_SINK_PIPELINE, self_metrics=True)
    collector.start()
    stack.callback(collector.stop)
    collector.wait_ready()
    assert collector.pid
    return SpanReceiver(collector.pid, collector.otlp_grpc_endpoint, collector.self_metrics_url)


# -- main -----------------------------------------------------------------------------------------


NAMES = ("plain", "default", "default-traced", "telemetry", "deny", "quota", "quota-http", "otelcol")


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def table(stacks: dict[str, Stack], skipped: dict[str, str]) -> list[str]:
    base = summarize(stacks["plain"].runs) if "plain" in stacks else None
    lines = [
        "| stack | vCPU / 1k req/s (range) | x sidecars' CPU | req/s | p50 ms | p99 ms | p50 added ms | non-2xx | "
        "sidecars vCPU / 1k req/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, stack in stacks.items():
        s = summarize(stack.runs)
        low = min(r["vcpu_per_krps"] for r in stack.runs)
        high = max(r["vcpu_per_krps"] for r in stack.runs)
        added = f"{s['p50'] - base['p50']:+.2f}" if base and name != "plain" else ""
        cost = f"{s['vcpu_per_krps']:.3f} ({low:.3f}-{high:.3f})" if name != "plain" else "-"
        ratio = f"{s['ratio']:.2f}" if name != "plain" else "-"
        lines.append(f"| {name} | {cost} | {ratio} | {s['rps']:.0f} | {s['p50']:.2f} | {s['p99']:.2f} | "
                     f"{added} | {s['non2xx']:.0f} | {s['envoy_vcpu_per_krps']:.3f} |")
    for name, why in skipped.items():
        lines.append(f"| {name} | not measured: {why} | | | | | | | |")
    return lines


def receiver_lines(stacks: dict[str, Stack], accounts: dict[str, dict[str, float]]) -> list[str]:
    """For each stack with a span receiver: its CPU (not in the mixer's figure) and whether every span
    the mixer built is accounted for: received by the receiver or counted dropped by the handler."""
    lines = []
    for name, spans in accounts.items():
        runs = stacks[name].runs
        s = summarize(runs)
        low = min(r["receiver_vcpu_per_krps"] for r in runs)
        high = max(r["receiver_vcpu_per_krps"] for r in runs)
        balanced = spans["received"] == spans["sent"] and spans["received"] + spans["dropped"] == spans["entries"]
        lines.append(
            f"- {name}: the span receiver (OpenTelemetry Collector, OTLP/gRPC) took {s['receiver_vcpu_per_krps']:.3f} "
            f"({low:.3f}-{high:.3f}) vCPU / 1k req/s, {s['receiver_ratio']:.2f}x the sidecars' CPU, not in the "
            f"mixer's figure. Spans: {spans['received']:.0f} received + {spans['dropped']:.0f} counted dropped = "
            f"{spans['received'] + spans['dropped']:.0f}, for {spans['entries']:.0f} access log entries (one span "
            f"each) and {spans['sent']:.0f} counted sent: {'all accounted for' if balanced else 'NOT BALANCED'}.")
    return lines


PEER_REQUESTS = re.compile(r"^istio_requests_total(?:\{[^}]*\})? (\S+)$", re.M)


ENVOY_LOGS_WRITTEN = re.compile(r"^access_logs\.open_telemetry_access_log\.logs_written: (\d+)$", re.M)


def peer_accounting(stack: Stack, timeout: float = 30.0) -> tuple[float, float]:
    """(records the peer counted in istio_requests_total, records the sidecars' OpenTelemetry access
    loggers sent it), once the count has caught up or ``timeout`` passed."""
    sent = 0.0
    for sidecar in stack.sidecars:
        answer = http_get(f"http://{sidecar.admin_address}/stats", timeout=10)
        if answer is None or answer[0] != 200:
            raise RuntimeError(f"no stats from the sidecar at {sidecar.admin_address}: {answer}")
        sent += sum(float(v) for v in ENVOY_LOGS_WRITTEN.findall(answer[1].decode()))
    deadline = time.monotonic() + timeout
    while True:  # the loggers flush every 0.5 s, the connector and the exporter every few seconds
        counted = metric_sum(stack.peer_metrics_url, PEER_REQUESTS)
        if counted >= sent or time.monotonic() > deadline:
            return counted, sent
        time.sleep(1)


def peer_lines(stacks: dict[str, Stack], counts: dict[str, tuple[float, float]]) -> list[str]:
    lines = []
    for name, (counted, sent) in counts.items():
        requests = stacks[name].requests_sent
        verdict = ("all counted" if counted == sent else
                   f"{sent - counted:.0f} not counted ({(sent - counted) / max(sent, 1):.2%})")
        lines.append(f"- {name}: the peer's istio_requests_total counts {counted:.0f} of the {sent:.0f} records "
                     f"the sidecars logged to it ({requests:.0f} answered requests, two records each, plus any "
                     f"cut off when wrk stopped): {verdict}.")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--only", default=",".join(NAMES), help=f"comma-separated subset of {','.join(NAMES)}")
    parser.add_argument("--static-bootstrap", action="store_true",
                        help="sidecars with the static ext_authz filter (a Check per request), not served policy")
    parser.add_argument("--workers", type=int, default=1, help="mixer serve --workers")
    parser.add_argument("--log-buffer-bytes", type=int, default=16384,
                        help="the sidecars' access log buffer (Envoy's default: 16384)")
    parser.add_argument("--append", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(NAMES)
    if unknown:
        parser.error(f"unknown stack(s) {sorted(unknown)}; known: {', '.join(NAMES)}")
    ensure_wrk()
    cpu = _cpu_model()
    machine = (f"{platform.machine()} {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
               f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"machine: {machine}", flush=True)
    stacks: dict[str, Stack] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="mesh-cost-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        upstream_port = free_port()
        start_envoys({"upstream": upstream_bootstrap(upstream_port)}, workdir, stack)
        for name in names:
            built = build_stack(name, args, upstream_port, workdir / name, stack)
            if isinstance(built, str):
                skipped[name] = built
                print(f"{name}: {built}", flush=True)
            else:
                stacks[name] = built
        for each in stacks.values():  # warm up: connections, caches, served policy
            each.drive(1, args.connections)
        for round_no in range(args.rounds):
            for name, each in _rotated(stacks, round_no):
                run = each.measure(args.duration, args.connections)
                each.runs.append(run)
                print(f"round {round_no + 1} {name}: {run['rps']:.0f} req/s, p50 {run['p50']:.2f} ms, "
                      f"{run['vcpu_per_krps']:.3f} vCPU/1k req/s ({run['ratio']:.2f}x sidecars)", flush=True)
        accounts = {name: each.receiver.accounting() for name, each in stacks.items() if each.receiver}
        peer_counts = {name: peer_accounting(each) for name, each in stacks.items() if each.peer_metrics_url}
    notes = receiver_lines(stacks, accounts)
    peer_notes = peer_lines(stacks, peer_counts)
    notes_all = notes + peer_notes
    lines = table(stacks, skipped) + ([""] + notes_all if notes_all else [])
    print("\n".join(lines))
    if args.append:
        command = ".venv/bin/python bench/mesh_cost.py " + " ".join(a for a in sys.argv[1:] if a != "--append")
        with open(ROOT / "BENCHMARKS.md", "a") as handle:
            handle.write("\n".join(["", f"`{command.strip()}` ({time.strftime('%Y-%m-%d %H:%M')} UTC; {machine}; "
                                    f"{args.connections} connections, {args.rounds} alternating rounds of "
                                    f"{args.duration:g}s, medians)", "", *lines, ""]))
    return 0 if all(note.endswith("all accounted for.") for note in notes) else 1


def _rotated(stacks: dict[str, Stack], shift: int) -> Iterator[tuple[str, Stack]]:
    """Each round starts with a different stack, so none always runs right after another."""
    items = list(stacks.items())
    shift %= max(len(items), 1)
    yield from items[shift:] + items[:shift]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


if __name__ == "__main__":
    sys.exit(main())
