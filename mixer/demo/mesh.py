"""The sample application behind Envoy sidecars: four workloads, each with its own sidecar."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mixer.demo import app
from mixer.processes import free_port
from proxy import EnvoyProcess, Inbound, Outbound, SidecarSpec, write_bootstrap

NAMESPACE = "default"
WORKLOADS = ("frontend-v1", "catalog-v1", "reviews-v1", "reviews-v2")


@dataclass
class Mesh:
    """frontend -> catalog -> reviews v1|v2, every hop through sidecars that report to the mixer."""

    workdir: Path
    mixer_grpc_port: int
    fail_every: int = 5  # reviews-v2 answers every Nth request with 503
    services: list[app.Service] = field(default_factory=list)
    sidecars: dict[str, EnvoyProcess] = field(default_factory=dict)
    inbound: dict[str, int] = field(default_factory=dict)  # workload -> its sidecar's inbound port

    def start(self) -> None:
        """Start apps and sidecars; call from a thread that outlives the sidecars (Envoy's PDEATHSIG)."""
        self.inbound = {name: free_port() for name in WORKLOADS}
        out_catalog, out_r1, out_r2 = free_port(), free_port(), free_port()
        self.services = [
            app.Service("frontend", app.frontend(lambda: out_catalog)),
            app.Service("catalog", app.catalog(lambda: (out_r1, out_r2))),
            app.Service("reviews-v1", app.reviews("v1")),
            app.Service("reviews-v2", app.reviews("v2", self.fail_every)),
        ]
        for service in self.services:
            service.start()
        apps = dict(zip(WORKLOADS, self.services))
        outbound = {
            "frontend-v1": (Outbound("catalog", out_catalog, "127.0.0.1", self.inbound["catalog-v1"]),),
            "catalog-v1": (
                Outbound("reviews", out_r1, "127.0.0.1", self.inbound["reviews-v1"]),
                Outbound("reviews", out_r2, "127.0.0.1", self.inbound["reviews-v2"]),
            ),
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        for workload in WORKLOADS:
            spec = SidecarSpec(
                workload=workload,
                namespace=NAMESPACE,
                inbound=(Inbound(self.inbound[workload], apps[workload].port),),
                outbound=outbound.get(workload, ()),
                mixer_port=self.mixer_grpc_port,
                service_account=workload.rsplit("-", 1)[0],
                tracing=False,
            )
            path = write_bootstrap(spec, self.workdir / f"{workload}.yaml")
            envoy = EnvoyProcess(path, log_path=self.workdir / f"{workload}.log")
            self.sidecars[workload] = envoy
            envoy.start()
        for envoy in self.sidecars.values():
            envoy.wait_ready()

    @property
    def entry_port(self) -> int:
        """Where clients call the frontend (its sidecar's inbound listener)."""
        return self.inbound["frontend-v1"]

    def pids(self) -> list[int]:
        return [envoy.pid for envoy in self.sidecars.values() if envoy.pid is not None]

    def stop(self) -> None:
        for envoy in self.sidecars.values():
            envoy.close()
        for service in self.services:
            service.stop()
