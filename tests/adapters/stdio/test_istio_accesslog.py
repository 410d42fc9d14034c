"""Istio 1.4's ``accesslog`` and ``tcpaccesslog`` (mixer/defaultconfig/istio-accesslog.yaml) on bags
the Envoy mapping makes from what real Envoy 1.40 sent: every variable evaluates, to the bag's values."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

import yaml
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2
from google.protobuf import json_format

from mixer.attributes import default_manifest
from mixer.config import DEFAULT_CONFIG_DIR, compile_config
from mixer.envoy_attributes import MappingOptions, http_entry_bag, stream_base_bag, tcp_entry_bag
from mixer.registry import AdapterRegistry
from mixer.runtime import Runtime

ACCESSLOG = DEFAULT_CONFIG_DIR / "istio-accesslog.yaml"
REFERENCE = Path(__file__).parents[2] / "frontdoors" / "testdata" / "envoy-probe"
MEMORY_AS_STDIO = """apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: stdio, namespace: istio-system}
spec: {compiledAdapter: memory}
"""


def variables_of(instance: str) -> set[str]:
    for doc in yaml.safe_load_all(ACCESSLOG.read_text()):
        if doc["kind"] == "instance" and doc["metadata"]["name"] == instance:
            return set(doc["spec"]["params"]["variables"])
    raise KeyError(instance)


async def runtime_recording_access_logs() -> Runtime:
    docs = [doc for doc in yaml.safe_load_all(ACCESSLOG.read_text()) if doc["kind"] != "handler"]
    runtime = Runtime()
    await runtime.apply(compile_config(
        [("istio-accesslog.yaml", yaml.safe_dump_all(docs)), ("memory.yaml", MEMORY_AS_STDIO)], AdapterRegistry()))
    return runtime


def recorded(runtime: Runtime) -> list[Any]:
    return list(runtime.snapshot.slots["stdio.handler.istio-system"].handler.instances)  # type: ignore[attr-defined]


def evaluation_errors(runtime: Runtime) -> float:
    return sum(sample.value for metric in runtime.metrics.evaluation_errors.collect()
               for sample in metric.samples if sample.name.endswith("_total"))


def http_bags() -> list[dict[str, Any]]:
    node = json_format.Parse((REFERENCE / "als_identifier_node.json").read_text(), als_pb2.StreamAccessLogsMessage())
    base, kind = stream_base_bag(node.identifier.node, node.identifier.log_name)
    lines = [line for line in (REFERENCE / "als_http_entries.jsonl").read_text().splitlines() if line.strip()]
    entries = [json_format.Parse(line, accesslog_pb2.HTTPAccessLogEntry()) for line in lines]
    return [http_entry_bag(entry, base, kind, default_manifest(), MappingOptions(trust_peer_headers=True))
            for entry in entries]


async def test_every_http_entry_gives_one_accesslog_line_with_its_values() -> None:
    runtime = await runtime_recording_access_logs()
    bags = http_bags()
    assert len(bags) >= 3
    runtime.report(bags)
    lines = recorded(runtime)
    assert evaluation_errors(runtime) == 0
    assert [line.name for line in lines] == ["accesslog.instance.istio-system"] * len(bags)
    for bag, line in zip(bags, lines):
        got = line.fields["variables"]
        assert set(got) == variables_of("accesslog")
        assert line.fields["severity"] == "Info"
        assert line.fields["timestamp"] == bag["request.time"]
        assert got["responseCode"] == bag["response.code"]
        assert got["latency"] == bag["response.duration"]
        assert got["responseTimestamp"] == bag["response.time"]
        assert (got["receivedBytes"], got["sentBytes"]) == (bag["request.total_size"], bag["response.total_size"])
        assert (got["requestSize"], got["responseSize"]) == (bag["request.size"], bag["response.size"])
        assert got["destinationWorkload"] == bag["destination.workload.name"] == "productpage-v1"
        assert got["destinationServiceHost"] == bag["destination.service.host"]
        assert got["reporter"] == "destination"  # the recorded sidecar logged its inbound listener
        assert (got["method"], got["url"], got["protocol"]) == (bag["request.method"], bag["request.path"], "http")
        assert got["sourceIp"] == bag["source.ip"]
        assert got["responseFlags"] == bag["context.proxy_error_code"]
        assert got["connection_security_policy"] == "none"
        assert got["httpAuthority"] == bag["request.host"]
        assert got["requestId"] == bag["request.headers"].get("x-request-id", "")
        assert got["userAgent"] == bag.get("request.useragent", "")


async def test_a_tcp_entry_gives_one_tcpaccesslog_line_with_its_values() -> None:
    runtime = await runtime_recording_access_logs()
    entry = accesslog_pb2.TCPAccessLogEntry()
    common = entry.common_properties
    common.downstream_remote_address.socket_address.address = "10.1.2.3"
    common.downstream_local_address.socket_address.address = "127.0.0.1"
    common.start_time.FromDatetime(dt.datetime(2026, 11, 26, 8, 0, 0))
    common.duration.FromTimedelta(dt.timedelta(seconds=2))
    common.access_log_type = accesslog_pb2.TcpConnectionEnd
    entry.connection_properties.received_bytes = 100
    entry.connection_properties.sent_bytes = 200
    base = {"destination.workload.name": "db-v1", "destination.service.host": "db.default.svc.cluster.local"}
    runtime.report([tcp_entry_bag(entry, base, "inbound", default_manifest())])
    (line,) = recorded(runtime)
    assert evaluation_errors(runtime) == 0
    assert line.name == "tcpaccesslog.instance.istio-system"
    got = line.fields["variables"]
    assert set(got) == variables_of("tcpaccesslog")
    assert line.fields["timestamp"] == dt.datetime(2026, 11, 26, 8, 0, 0, tzinfo=dt.timezone.utc)
    assert (got["receivedBytes"], got["sentBytes"]) == (100, 200)
    assert (got["totalReceivedBytes"], got["totalSentBytes"]) == (100, 200)
    assert got["connectionDuration"] == dt.timedelta(seconds=2)
    assert (got["connectionEvent"], got["protocol"], got["reporter"]) == ("close", "tcp", "destination")
    assert got["destinationWorkload"] == "db-v1"
    assert got["sourceIp"] == ipaddress.ip_address("10.1.2.3")


def test_the_access_log_config_is_istios_with_a_json_stdout_handler() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(ACCESSLOG.read_text())}
    assert docs["handler", "stdio"]["spec"] == {"compiledAdapter": "stdio", "params": {"outputAsJson": True}}
    assert docs["rule", "stdio"]["spec"]["match"] == 'context.protocol == "http" || context.protocol == "grpc"'
    assert docs["rule", "stdiotcp"]["spec"]["match"] == 'context.protocol == "tcp"'
    assert len(variables_of("accesslog")) == 41 and len(variables_of("tcpaccesslog")) == 26
