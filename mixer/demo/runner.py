"""``mixer demo``: the mixer, a sidecar'd sample app, load, and Prometheus, all on loopback."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import TextIO

from prometheus_client.parser import text_string_to_metric_families

from mixer import processes
from mixer.demo import prometheus
from mixer.demo.config import write_config
from mixer.demo.mesh import Mesh
from mixer.demo.traffic import Traffic
from mixer import processes
from mixer.processes import free_port, wait_for_port
from mixer.thirdparty import JaegerServer, KafkaBroker, cached, ensure

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "grafana" / "dashboards"


@dataclass
class DemoOptions:
    http_port: int = 15014
    grpc_port: int = 9091
    metrics_port: int = 42422
    prometheus_port: int = 9090
    any_ports: bool = False  # every port free-picked (tests); otherwise the usual ports when free
    rate: float = 10.0  # requests per second into the frontend
    interval: float = 5.0  # seconds between summary lines
    prometheus: bool = True  # start Prometheus when the binary is installed
    jaeger: bool = True  # start Jaeger when it has been built (the demo does not build it: minutes)
    jaeger_port: int = 16686
    scrape_interval: str = "5s"
    stackdriver_endpoint: str = ""  # "": none; "fake": a loopback fake MetricService the demo starts
    stackdriver_project: str = "mixer-demo"
    stackdriver_insecure: bool = False  # plaintext, no credentials (a fake or private proxy)
    kafka: bool = False  # Kafka between a front door and two workers (the broker fetched with Maven)
    kafka_workers: int = 2


def _port(preferred: int, any_port: bool) -> int:
    if any_port:
        return free_port()
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", preferred))
        return preferred
    except OSError:
        return free_port()


class Demo:
    """Starts everything on loopback from the calling thread (keep it alive: Envoy's PDEATHSIG)."""

    def __init__(self, options: DemoOptions, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.out = out
        self.workdir = Path(tempfile.mkdtemp(prefix="mixer-demo-"))
        any_port = options.any_ports
        self.http_port = _port(options.http_port, any_port)
        self.grpc_port = _port(options.grpc_port, any_port)
        self.metrics_port = _port(options.metrics_port, any_port)
        self.prometheus_port = _port(options.prometheus_port, any_port)
        self.mixer: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.worker_metrics_ports: list[int] = []
        self.broker: KafkaBroker | None = None
        self.mesh = Mesh(self.workdir / "sidecars", self.grpc_port)
        self.traffic: Traffic | None = None
        self.prometheus: prometheus.PrometheusServer | None = None
        self.jaeger_port = _port(options.jaeger_port, any_port)
        self.jaeger: JaegerServer | None = None
        self.fake_stackdriver: subprocess.Popen[bytes] | None = None
        self.stackdriver_endpoint = options.stackdriver_endpoint
        self.stopping = threading.Event()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def _stackdriver_params(self) -> dict[str, object] | None:
        """The stackdriver handler's params for the chosen endpoint, starting the fake if asked."""
        options = self.options
        if not options.stackdriver_endpoint:
            return None
        insecure = options.stackdriver_insecure
        if options.stackdriver_endpoint == "fake":
            port = free_port()
            self.fake_stackdriver = processes.start(
                [sys.executable, "-m", "adapters.stackdriver.fake", "--port", str(port)],
                str(self.workdir / "fake-stackdriver.log"),
            )
            wait_for_port(port, 30.0, self.fake_stackdriver)
            self.stackdriver_endpoint, insecure = f"127.0.0.1:{port}", True
        return {"projectId": options.stackdriver_project, "endpoint": self.stackdriver_endpoint, "insecure": insecure}

    def start(self) -> None:
        jaeger = cached("jaeger") if self.options.jaeger else None
        if jaeger:  # first: the mixer's otlp handler sends the mesh's spans to it
            self.jaeger = JaegerServer(jaeger, self.workdir / "jaeger", query_port=self.jaeger_port)
            self.jaeger.start()
            self.jaeger.wait_ready()
        otlp_endpoint = self.jaeger.otlp_grpc_endpoint if self.jaeger else ""
        stackdriver = self._stackdriver_params()  # starts the fake MetricService once, if asked
        config = write_config(self.workdir / "config", f"127.0.0.1:{self.metrics_port}",
                              stackdriver=stackdriver, otlp_endpoint=otlp_endpoint)
        kafka: list[str] = []
        if self.options.kafka:
            self.broker = KafkaBroker(ensure("kafka"), self.workdir / "kafka")
            self.broker.start()
            self.broker.wait_ready()
            kafka = ["--kafka-bootstrap", self.broker.bootstrap, "--kafka-session-timeout", "6"]
        self.mixer = processes.start(
            [sys.executable, "-m", "mixer.cli", "serve", "--config", str(config),
             "--port", str(self.http_port), "--grpc-port", str(self.grpc_port),
             # loopback only, no mTLS: the sidecars' identity headers are all there is
             "--trust-peer-headers", "--watch-interval", "0",
             *(["--mode", "frontdoor", *kafka] if kafka else [])],
            self.workdir / "mixer.log",
        )
        for port in (self.http_port, self.grpc_port, self.metrics_port):
            wait_for_port(port, 30.0, self.mixer)
        for n in range(self.options.kafka_workers if kafka else 0):
            metrics_port = free_port()
            # the workers dispatch the reports: each pushes the spans (and Cloud Monitoring series) of its partitions
            worker_config = write_config(self.workdir / f"worker-{n}", f"127.0.0.1:{metrics_port}",
                                         stackdriver=stackdriver, otlp_endpoint=otlp_endpoint)
            worker = processes.start(
                [sys.executable, "-m", "mixer.cli", "serve", "--config", str(worker_config), "--port",
                 str(free_port()), "--no-grpc", "--watch-interval", "0", "--mode", "worker", *kafka],
                self.workdir / f"worker-{n}.log",
            )
            self.workers.append(worker)
            self.worker_metrics_ports.append(metrics_port)
            wait_for_port(metrics_port, 30.0, worker)
        self.mesh.start()
        self.traffic = Traffic(self.mesh.entry_port, self.options.rate)
        self.traffic.start()
        if self.options.prometheus and prometheus.binary():
            targets = [f"127.0.0.1:{port}" for port in (self.metrics_port, *self.worker_metrics_ports)]
            text = prometheus.scrape_config(targets, self.options.scrape_interval)
            self.prometheus = prometheus.PrometheusServer(text, self.prometheus_port, self.workdir / "prometheus")
            self.prometheus.start()
            self.prometheus.wait_ready()

    def pids(self) -> list[int]:
        """Every child process this demo started."""
        pids = [self.mixer.pid] if self.mixer else []
        pids += [worker.pid for worker in self.workers]
        if self.broker and self.broker.pid:
            pids.append(self.broker.pid)
        pids += self.mesh.pids()
        if self.prometheus and self.prometheus.pid:
            pids.append(self.prometheus.pid)
        if self.jaeger and self.jaeger.pid:
            pids.append(self.jaeger.pid)
        if self.fake_stackdriver:
            pids.append(self.fake_stackdriver.pid)
        return pids

    def stop(self) -> None:
        if self.traffic:
            self.traffic.stop()
        self.mesh.stop()
        if self.prometheus:
            self.prometheus.stop()
        if self.jaeger:
            self.jaeger.stop()
        processes.stop_all([self.mixer, *self.workers])
        processes.stop(self.fake_stackdriver)  # after the mixer, which pushes its last points on exit
        if self.broker:
            self.broker.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def banner(self) -> str:
        lines = [
            "mixer demo: frontend -> catalog -> reviews (v1, v2), each behind an Envoy sidecar",
            f"  mixer native API   http://127.0.0.1:{self.http_port}  (gRPC front doors 127.0.0.1:{self.grpc_port})",
            f"  metrics            {self.metrics_url}",
            f"  frontend           http://127.0.0.1:{self.mesh.entry_port}/",
        ]
        if self.broker:
            workers = " ".join(f"http://127.0.0.1:{port}/metrics" for port in self.worker_metrics_ports)
            lines.insert(2, f"  kafka              {self.broker.bootstrap}, topic mixer-reports: the mixer above is the "
                            f"front door; {len(self.workers)} workers dispatch (metrics {workers})")
        if self.prometheus:
            lines.append(f"  prometheus         {self.prometheus.url}/graph?g0.expr=sum(rate(istio_requests_total[1m]))by(destination_service_name,response_code)")
        else:
            lines.append("  prometheus         not started (no prometheus binary); scrape config: deploy/prometheus.yml")
        if self.jaeger:
            lines.append(f"  jaeger             {self.jaeger.url}/api/services , /api/traces?service=NAME  "
                         f"(OTLP in: gRPC {self.jaeger.otlp_grpc_endpoint}, HTTP {self.jaeger.otlp_http_endpoint})")
        elif self.options.jaeger:
            lines.append("  jaeger             not started: not built yet (`python -m mixer.thirdparty jaeger` "
                         "builds it once, a few minutes; `make run` does it first)")
        if self.stackdriver_endpoint:
            fake = " (the loopback fake MetricService)" if self.fake_stackdriver else ""
            lines.append(f"  stackdriver        {self.stackdriver_endpoint}{fake}, project {self.options.stackdriver_project}, "
                         "Istio's istio.io/service/* metrics every 10s")
        if DASHBOARDS.is_dir():
            lines.append(f"  grafana dashboards {DASHBOARDS}/*.json (provisioning in {DASHBOARDS.parent}/provisioning)")
        lines.append(f"  child pids         {' '.join(map(str, self.pids()))}")
        lines.append("Ctrl-C to stop.")
        return "\n".join(lines)

    def run(self) -> int:
        """Start, print a summary line per interval until SIGINT/SIGTERM, stop everything."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self.stopping.set())
        try:
            self.start()
            print(self.banner(), file=self.out, flush=True)
            summary = Summary([self.metrics_url, *(f"http://127.0.0.1:{p}/metrics" for p in self.worker_metrics_ports)])
            while not self.stopping.wait(self.options.interval):
                print(summary.line(), file=self.out, flush=True)
        finally:
            self.stop()
            print("mixer demo: stopped", file=self.out, flush=True)
        return 0


class Summary:
    """Rates between two scrapes of the adapters' /metrics (the mixer's, and each worker's with Kafka)."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = list(urls)
        self.last = self._read()

    def _read(self) -> tuple[float, dict[str, float]]:
        totals = {"requests": 0.0, "errors": 0.0, "checks": 0.0, "denied": 0.0, "pushed": 0.0}
        texts = []
        for url in self.urls:
            try:
                with urllib.request.urlopen(url, timeout=5) as reply:
                    texts.append(reply.read().decode())
            except OSError:
                continue
        for text in texts:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "istio_requests_total" and sample.labels.get("reporter") == "destination":
                        totals["requests"] += sample.value
                        if sample.labels.get("response_code", "").startswith("5"):
                            totals["errors"] += sample.value
                    elif sample.name == "mixer_sent_instances_total" and sample.labels.get("handler", "").startswith("stackdriver."):
                        totals["pushed"] += sample.value
                    elif sample.name == "mixer_checks_total":
                        totals["checks"] += sample.value
                        if sample.labels.get("result") != "ok":
                            totals["denied"] += sample.value
        return time.monotonic(), totals

    def line(self) -> str:
        (then, before), (now, after) = self.last, self._read()
        self.last = (now, after)
        span = max(now - then, 1e-9)
        delta = {k: after[k] - before[k] for k in after}
        error_rate = delta["errors"] / delta["requests"] if delta["requests"] else 0.0
        return (
            f"{time.strftime('%H:%M:%S')}  mesh requests/s {delta['requests'] / span:6.1f}  errors {error_rate:6.1%}  "
            f"checks/s {delta['checks'] / span:6.1f}  denials {int(delta['denied'])} (total {int(after['denied'])})"
            + (f"  stackdriver points {int(after['pushed'])}" if after["pushed"] else "")
        )
