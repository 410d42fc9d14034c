"""Traces end to end with real parts: requests through real Envoy sidecars, the mixer as a
``mixer serve`` process running the default tracing config (plus the test mesh's deny rule), and a
real Jaeger v2 (built from source into the cache when missing) answering its query API.

Sidecars a-v1, b-v1 and c-v1 trace (their OpenTelemetry tracers export to the mixer's OTLP door);
e-v1 and f-v1 do not (their spans come from their access log entries). Either way one request hop
must give exactly one client span and one server span in one trace.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from mixer.processes import free_port
from mixer.thirdparty import JaegerServer, ensure
from proxy import EnvoyProcess, Inbound, Outbound, SidecarSpec, write_bootstrap
from tests.proxy.support import MixerProcess, Upstream, get, tracing_config, wait_until

@dataclass
class TracedMesh:
    mixer: MixerProcess
    jaeger: JaegerServer
    a_to_b: int  # traced hop a-v1 -> b-v1
    a_to_c: int  # traced hop, denied by the mesh's rule
    e_to_f: int  # untraced hop e-v1 -> f-v1


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracedMesh]:
    workdir = tmp_path_factory.mktemp("traced-mesh")
    binary = ensure("jaeger")  # built once into the cache when missing (minutes when cold)
    app = Upstream()
    envoys: list[EnvoyProcess] = []
    with JaegerServer(binary, workdir / "jaeger") as jaeger:
        mixer = MixerProcess(workdir)
        (workdir / "tracing.yaml").write_text(tracing_config(jaeger.otlp_grpc_endpoint))
        mixer.extra_args += ("--config", str(workdir / "tracing.yaml"))
        mixer.start()
        ports = {name: free_port() for name in ("b", "c", "f", "a_b", "a_c", "e_f")}
        specs = [
            SidecarSpec(workload="a-v1", mixer_port=mixer.grpc_port, outbound=(
                Outbound("b", ports["a_b"], "127.0.0.1", ports["b"]),
                Outbound("c", ports["a_c"], "127.0.0.1", ports["c"]))),
            SidecarSpec(workload="b-v1", inbound=(Inbound(ports["b"], app.port),), mixer_port=mixer.grpc_port),
            SidecarSpec(workload="c-v1", inbound=(Inbound(ports["c"], app.port),), mixer_port=mixer.grpc_port),
            SidecarSpec(workload="e-v1", mixer_port=mixer.grpc_port, tracing=False,
                        outbound=(Outbound("f", ports["e_f"], "127.0.0.1", ports["f"]),)),
            SidecarSpec(workload="f-v1", inbound=(Inbound(ports["f"], app.port),), mixer_port=mixer.grpc_port,
                        tracing=False),
        ]
        try:
            for spec in specs:  # from this long-lived thread: Envoy's PDEATHSIG follows it
                envoy = EnvoyProcess(write_bootstrap(spec, workdir / f"{spec.workload}.yaml"),
                                     log_path=workdir / f"{spec.workload}.log")
                envoy.start()
                envoys.append(envoy)
            for envoy in envoys:
                envoy.wait_ready()
            yield TracedMesh(mixer, jaeger, ports["a_b"], ports["a_c"], ports["e_f"])
        finally:
            for envoy in envoys:
                envoy.close()
            mixer.stop()
            app.close()


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span["tags"]}


def trace_of(mesh: TracedMesh, service: str, path: str, spans: int) -> dict[str, Any]:
    """The one trace whose spans name ``path``, once it has ``spans`` spans; then, a few seconds
    later, still exactly those (late duplicates would show up by then)."""

    def find() -> dict[str, Any] | None:
        found = [t for t in mesh.jaeger.traces(service, limit=100, lookback="1h")
                 if any(tags(s).get("url.path") == path for s in t["spans"])]
        assert len(found) <= 1, f"{len(found)} traces for {path}"
        return found[0] if found and len(found[0]["spans"]) >= spans else None

    wait_until(find, timeout=30, what=f"a trace of {spans} spans for {path} in Jaeger")
    time.sleep(3)  # the access logs flush every 0.5 s, the tracers every 1 s, the adapter every 0.2 s
    trace = find()
    assert trace is not None
    return trace


def by_kind(trace: dict[str, Any]) -> dict[str, dict[str, Any]]:
    kinds = [tags(span)["span.kind"] for span in trace["spans"]]
    assert sorted(kinds) == ["client", "server"], kinds  # exactly one of each: no duplicates
    return {tags(span)["span.kind"]: span for span in trace["spans"]}


def service_of(trace: dict[str, Any], span: dict[str, Any]) -> str:
    return str(trace["processes"][span["processID"]]["serviceName"])


def check_hop(trace: dict[str, Any], source: str, destination: str, code: int) -> tuple[dict[str, Any], dict[str, Any]]:
    spans = by_kind(trace)
    client, server = spans["client"], spans["server"]
    assert service_of(trace, client) == source.split("-")[0]
    assert service_of(trace, server) == destination.split("-")[0]
    assert server["references"] == [{"refType": "CHILD_OF", "traceID": trace["traceID"], "spanID": client["spanID"]}]
    for span in (client, server):
        found = tags(span)
        assert found["http.response.status_code"] == code
        assert found["source.workload.name"] == source
        assert found["destination.workload.name"] == destination
        assert found["destination.service.host"] == f"{destination.split('-')[0]}.default.svc.cluster.local"
        assert found["http.request.method"] == "GET"
    return client, server


def test_a_traced_hop_is_one_trace_of_a_client_and_a_server_span(mesh: TracedMesh) -> None:
    status, _, body = get(mesh.a_to_b, "/traced/hop?q=1")
    assert status == 200, body
    trace = trace_of(mesh, "b", "/traced/hop", 2)
    client, server = check_hop(trace, "a-v1", "b-v1", 200)
    assert client["operationName"].startswith("egress ") and server["operationName"] == "ingress"
    assert "error" not in tags(client) and "error" not in tags(server)
    assert tags(server)["guid:x-request-id"] == tags(client)["guid:x-request-id"]  # the tracer's own tags kept


def test_a_denied_request_shows_as_an_error_span(mesh: TracedMesh) -> None:
    status, _, body = get(mesh.a_to_c, "/denied")
    assert status == 403 and b"a-v1 may not call c-v1" in body
    trace = trace_of(mesh, "c", "/denied", 2)
    client, server = check_hop(trace, "a-v1", "c-v1", 403)
    # OpenTelemetry's HTTP conventions: a 4xx answer is the client's error, not the server's
    assert tags(client)["error"] is True and tags(client)["otel.status_code"] == "ERROR"
    assert "error" not in tags(server)
    assert tags(server)["response.flags"] == "UAEX"  # the check denied it


def test_a_hop_whose_sidecars_do_not_trace_gets_its_spans_from_the_access_logs(mesh: TracedMesh) -> None:
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"  # an instrumented app's span
    status, _, body = get(mesh.e_to_f, "/untraced/hop", {"traceparent": caller})
    assert status == 200, body
    trace = trace_of(mesh, "f", "/untraced/hop", 2)
    assert trace["traceID"] == "4bf92f3577b34da6a3ce929d0e0e4736"  # joins the caller's trace
    client, server = check_hop(trace, "e-v1", "f-v1", 200)
    assert client["references"] == [{"refType": "CHILD_OF", "traceID": trace["traceID"], "spanID": "00f067aa0ba902b7"}]
    assert client["operationName"] == server["operationName"] == "GET /untraced/hop"
    assert tags(client)["request.id"] == tags(server)["request.id"]
