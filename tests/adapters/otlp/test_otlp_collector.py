"""OTLP logs into a real OTLP receiver: Istio's access log instance, through the rules and the otlp
adapter, into an OpenTelemetry Collector (built into the cache when missing) over gRPC and HTTP;
read back from the Collector's file exporter."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml

from mixer.thirdparty import CollectorServer, ensure
from mixer.runtime import Runtime
from tests.proxy.support import wait_until

ACCESSLOG = Path(__file__).parents[3] / "mixer" / "defaultconfig" / "istio-accesslog.yaml"


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorServer]:
    binary = ensure("otelcol")  # built once into the cache when missing (minutes when cold)
    with CollectorServer(binary, tmp_path_factory.mktemp("otelcol")) as server:
        yield server


def access_logs_to_otlp(protocol: str, endpoint: str) -> str:
    """Istio's default access log config with its handler swapped for an otlp one."""
    docs = list(yaml.safe_load_all(ACCESSLOG.read_text()))
    for doc in docs:
        if doc["kind"] == "handler":
            doc["spec"] = {"compiledAdapter": "otlp", "params": {
                "protocol": protocol, "endpoint": endpoint, "delivery": {"batchTimeout": "50ms"}}}
    return yaml.safe_dump_all(docs, sort_keys=False)


@pytest.fixture(params=["grpc", "http"])
async def runtime(request: pytest.FixtureRequest, collector: CollectorServer, tmp_path: Path) -> AsyncIterator[Runtime]:
    endpoint = collector.otlp_grpc_endpoint if request.param == "grpc" else collector.otlp_http_endpoint
    config = tmp_path / "accesslog.yaml"
    config.write_text(access_logs_to_otlp(request.param, endpoint))
    loaded = await Runtime.load([config])
    try:
        yield loaded
    finally:
        await loaded.close()


async def test_access_log_entries_arrive_as_otlp_log_records(runtime: Runtime, collector: CollectorServer) -> None:
    path = f"/reviews/{id(runtime)}"  # tells this run's records from the other protocol's
    when = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.timezone.utc)
    bag = {"context.protocol": "http", "context.reporter.kind": "inbound", "request.path": path,
           "request.method": "GET", "request.time": when, "response.time": when + dt.timedelta(milliseconds=7),
           "response.code": 503, "response.duration": dt.timedelta(milliseconds=7),
           "source.workload.name": "productpage-v1", "destination.workload.name": "reviews-v2",
           "destination.ip": ipaddress.ip_address("10.1.2.3"), "request.headers": {"x-request-id": "r-1"}}
    runtime.report([bag, {**bag, "response.code": 200}], "test")
    await runtime.close()  # drains the handler's queues into the collector

    def arrived() -> list[dict[str, object]] | None:
        found = [r for r in collector.log_records() if r["attributes"].get("url") == path]
        return found if len(found) == 2 else None

    records = wait_until(arrived, timeout=20, what="2 log records in the collector")
    first = records[0]
    assert first["body"] == "accesslog"
    assert (first["severity_text"], first["severity_number"]) == ("Info", 9)
    assert first["time_unix_nano"] == int(when.timestamp()) * 10**9
    assert first["resource"]["service.name"] == "mixer"
    attributes = first["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["responseCode"] == 503 and attributes["method"] == "GET"
    assert attributes["sourceWorkload"] == "productpage-v1" and attributes["destinationWorkload"] == "reviews-v2"
    assert attributes["destinationIp"] == "10.1.2.3" and attributes["latency"] == "7ms"
    assert attributes["requestId"] == "r-1"
    assert {r["attributes"]["responseCode"] for r in records} == {503, 200}  # type: ignore[index]
