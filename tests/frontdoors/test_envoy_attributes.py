"""The Envoy -> attribute mapping, against messages real Envoy 1.40 sent (shared/reference)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from pathlib import Path

import pytest
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf import json_format

from mixer.attributes import BagError, ValueType, default_manifest, value_from_text
from mixer.envoy_attributes import (
    TCP_CHECK_VARYING,
    MappingOptions,
    check_request_bag,
    descriptor_bag,
    http_entry_bag,
    inbound_tcp_check_facts,
    principal_from_uri,
    proxy_error_code,
    stream_base_bag,
    tcp_entry_bag,
)

# Copies of what real Envoy 1.40 sent (shared/reference/envoy-probe), kept with the tests.
REFERENCE = Path(__file__).parent / "testdata" / "envoy-probe"

MANIFEST = default_manifest()
TRUSTING = MappingOptions(trust_peer_headers=True)
STRICT = MappingOptions()


def _lines(name: str) -> list[dict]:
    return [json.loads(line) for line in (REFERENCE / name).read_text().splitlines() if line.strip()]


def _node_message() -> als_pb2.StreamAccessLogsMessage:
    return json_format.Parse((REFERENCE / "als_identifier_node.json").read_text(), als_pb2.StreamAccessLogsMessage())


def _entries() -> list[accesslog_pb2.HTTPAccessLogEntry]:
    return [json_format.Parse(json.dumps(e), accesslog_pb2.HTTPAccessLogEntry()) for e in _lines("als_http_entries.jsonl")]


def _checks() -> list[external_auth_pb2.CheckRequest]:
    return [json_format.Parse(json.dumps(c), external_auth_pb2.CheckRequest()) for c in _lines("ext_authz_check_requests.jsonl")]


def test_stream_base_bag_takes_identity_from_node_metadata() -> None:
    message = _node_message()
    base, kind = stream_base_bag(message.identifier.node, message.identifier.log_name)
    assert kind == "inbound"
    assert base["destination.workload.name"] == "productpage-v1"
    assert base["destination.workload.namespace"] == "default"
    assert base["destination.labels"] == {"app": "productpage", "version": "v1"}
    assert base["destination.service.name"] == "productpage"
    assert base["destination.service.host"] == "productpage.default.svc.cluster.local"
    assert base["destination.uid"] == "kubernetes://productpage-v1-7d9f.default"
    assert base["context.reporter.kind"] == "inbound"
    assert base["context.proxy_version"] == "1.40.0"
    assert "source.workload.name" not in base


def test_http_entry_maps_request_response_and_connection() -> None:
    message = _node_message()
    base, kind = stream_base_bag(message.identifier.node, message.identifier.log_name)
    bag = http_entry_bag(_entries()[0], base, kind, MANIFEST, STRICT)
    assert bag["request.method"] == "GET"
    assert bag["request.path"] == "/productpage"
    assert bag["request.host"] == "127.0.0.1:10000"
    assert bag["request.scheme"] == "http"
    assert bag["request.useragent"] == "curl/7.88.1"
    assert bag["request.id"] == "5c8a3bb6-3b34-9beb-90d5-106dab5951b4"
    assert bag["request.headers"]["x-source-workload"] == "frontend-v1"
    assert bag["request.size"] == 0
    assert bag["request.total_size"] == 323
    assert bag["request.time"] == dt.datetime(2026, 11, 26, 6, 22, 34, 779880, tzinfo=dt.timezone.utc)
    assert bag["response.code"] == 200
    assert bag["response.size"] == 185
    assert bag["response.total_size"] == 129 + 185
    assert bag["response.headers"] == {"content-type": "application/json"}
    assert bag["response.duration"] == dt.timedelta(microseconds=9820)  # time_to_last_downstream_tx_byte, truncated
    assert bag["response.time"] == bag["request.time"] + bag["response.duration"]
    assert bag["source.ip"] == ipaddress.ip_address("127.0.0.1")
    assert bag["source.port"] == 54482
    assert bag["destination.port"] == 10000
    assert bag["connection.received.bytes"] == 122
    assert bag["connection.sent.bytes"] == 343
    assert bag["connection.mtls"] is False
    assert bag["context.protocol"] == "http"
    assert bag["context.proxy_error_code"] == "-"
    assert bag["destination.workload.name"] == "productpage-v1"  # from the node, not from headers


def test_every_reference_entry_fits_the_manifest() -> None:
    message = _node_message()
    base, kind = stream_base_bag(message.identifier.node, message.identifier.log_name)
    for entry in _entries():
        bag = http_entry_bag(entry, base, kind, MANIFEST, TRUSTING)
        for name, value in bag.items():
            assert name in MANIFEST, name
            assert value is not None


def test_denied_entry_carries_uaex_flag() -> None:
    entry = _entries()[1]
    bag = http_entry_bag(entry, {}, "inbound", MANIFEST, STRICT)
    assert bag["response.code"] == 403
    assert bag["context.proxy_error_code"] == "UAEX"
    assert bag["response.headers"]["x-denied-by"] == "py-collector"


def test_peer_headers_are_ignored_unless_trusted() -> None:
    entry = _entries()[0]
    entry.request.request_headers["x-mixer-workload"] = "frontend-v1"
    entry.request.request_headers["x-mixer-namespace"] = "default"
    assert "source.workload.name" not in http_entry_bag(entry, {}, "inbound", MANIFEST, STRICT)
    bag = http_entry_bag(entry, {}, "inbound", MANIFEST, TRUSTING)
    assert bag["source.workload.name"] == "frontend-v1"
    assert bag["source.workload.namespace"] == "default"


def test_outbound_entry_reads_peer_from_response_headers_and_upstream_address() -> None:
    entry = _entries()[0]
    entry.response.response_headers["x-mixer-workload"] = "productpage-v1"
    bag = http_entry_bag(entry, {"source.workload.name": "frontend-v1"}, "outbound", MANIFEST, TRUSTING)
    assert bag["source.workload.name"] == "frontend-v1"
    assert bag["destination.workload.name"] == "productpage-v1"
    assert bag["destination.port"] == 18080  # upstream_remote_address


def test_custom_tags_naming_attributes_are_typed() -> None:
    entry = _entries()[0]
    entry.common_properties.custom_tags["destination.service.name"] = "reviews"
    entry.common_properties.custom_tags["connection.mtls"] = "true"
    entry.common_properties.custom_tags["source_workload"] = "ignored: not an attribute"
    bag = http_entry_bag(entry, {}, "inbound", MANIFEST, STRICT)
    assert bag["destination.service.name"] == "reviews"
    assert bag["connection.mtls"] is True
    entry.common_properties.custom_tags["response.code"] = "not-a-number"
    with pytest.raises(BagError, match="response.code"):
        http_entry_bag(entry, {}, "inbound", MANIFEST, STRICT)


def test_mtls_peer_certificate_gives_principal_and_namespace() -> None:
    entry = _entries()[0]
    peer = entry.common_properties.tls_properties.peer_certificate_properties
    peer.subject_alt_name.add(uri="spiffe://cluster.local/ns/shop/sa/frontend")
    entry.common_properties.tls_properties.tls_sni_hostname = "productpage.default.svc"
    bag = http_entry_bag(entry, {}, "inbound", MANIFEST, STRICT)
    assert bag["connection.mtls"] is True
    assert bag["source.principal"] == "cluster.local/ns/shop/sa/frontend"
    assert bag["source.namespace"] == "shop"
    assert bag["connection.requested_server_name"] == "productpage.default.svc"


def test_tcp_entry() -> None:
    entry = accesslog_pb2.TCPAccessLogEntry()
    entry.common_properties.downstream_remote_address.socket_address.address = "10.1.2.3"
    entry.common_properties.downstream_remote_address.socket_address.port_value = 4000
    entry.common_properties.downstream_local_address.socket_address.address = "127.0.0.1"
    entry.common_properties.downstream_local_address.socket_address.port_value = 5432
    entry.common_properties.duration.FromTimedelta(dt.timedelta(seconds=2))
    entry.common_properties.access_log_type = accesslog_pb2.TcpConnectionEnd
    entry.common_properties.response_flags.upstream_connection_failure = True
    entry.connection_properties.received_bytes = 100
    entry.connection_properties.sent_bytes = 200
    bag = tcp_entry_bag(entry, {}, "inbound", MANIFEST)
    assert bag["context.protocol"] == "tcp"
    assert bag["connection.event"] == "close"
    assert bag["connection.duration"] == dt.timedelta(seconds=2)
    assert bag["connection.received.bytes"] == 100
    assert bag["connection.sent.bytes"] == 200
    assert bag["source.ip"] == ipaddress.ip_address("10.1.2.3")
    assert bag["destination.port"] == 5432
    assert bag["context.proxy_error_code"] == "UF"


def test_proxy_error_codes_join_in_envoy_order() -> None:
    flags = accesslog_pb2.ResponseFlags(no_healthy_upstream=True, rate_limited=True)
    assert proxy_error_code(flags) == "UH,RL"
    assert proxy_error_code(accesslog_pb2.ResponseFlags()) == "-"


def test_check_request_maps_destination_labels_and_extensions() -> None:
    bag, quotas = check_request_bag(_checks()[0], MANIFEST, STRICT)
    assert bag["destination.workload.name"] == "productpage-v1"
    assert bag["destination.labels"] == {"app": "productpage", "version": "v1"}
    assert bag["request.path"] == "/reviews"
    assert bag["request.method"] == "GET"
    assert bag["request.host"] == "127.0.0.1:10001"
    assert bag["request.id"] == "fb5a38c3-2f2c-920d-8b0a-587ceca5586c"
    assert bag["request.useragent"] == "curl/7.88.1"
    assert bag["request.headers"][":path"] == "/reviews"
    assert bag["source.port"] == 40732
    assert bag["destination.port"] == 10000
    assert bag["context.reporter.kind"] == "inbound"
    assert bag["connection.mtls"] is False
    assert "source.workload.name" not in bag  # x-source-workload is a header: not trusted by default
    assert quotas == []


def test_check_request_trusting_headers_and_quota_extension() -> None:
    request = _checks()[0]
    request.attributes.request.http.headers["x-mixer-workload"] = "frontend-v1"
    request.attributes.context_extensions["mixer.quotas"] = "requestcount, other"
    request.attributes.context_extensions["destination.service.name"] = "productpage"
    bag, quotas = check_request_bag(request, MANIFEST, TRUSTING)
    assert bag["source.workload.name"] == "frontend-v1"
    assert bag["source.services"] == "frontend"
    assert bag["destination.service.name"] == "productpage"
    assert quotas == ["requestcount", "other"]


def test_check_request_wrongly_typed_extension_names_the_attribute() -> None:
    request = _checks()[0]
    request.attributes.context_extensions["destination.port"] = "eighty"
    with pytest.raises(BagError, match="destination.port"):
        check_request_bag(request, MANIFEST, STRICT)


def test_check_request_spiffe_principal() -> None:
    request = _checks()[0]
    request.attributes.source.principal = "spiffe://cluster.local/ns/default/sa/frontend"
    bag, _ = check_request_bag(request, MANIFEST, STRICT)
    assert bag["source.principal"] == "cluster.local/ns/default/sa/frontend"
    assert bag["source.namespace"] == "default"
    assert bag["connection.mtls"] is True


def test_tcp_check_request_maps_the_connection() -> None:
    # Recorded from envoy.filters.network.ext_authz on the generator's TCP inbound listener.
    lines = _lines("ext_authz_tcp_check_requests.jsonl")
    request = json_format.Parse(json.dumps(lines[1]), external_auth_pb2.CheckRequest())
    bag, quotas = check_request_bag(request, MANIFEST, TRUSTING)
    assert bag == {
        "context.reporter.kind": "inbound",
        "context.protocol": "tcp",
        "source.ip": ipaddress.ip_address("127.0.0.2"),
        "source.port": 33031,
        "destination.ip": ipaddress.ip_address("127.0.0.1"),
        "destination.port": 46787,
        "destination.workload.name": "db-v1",
        "destination.name": "db-v1",
        "destination.workload.namespace": "default",
        "destination.namespace": "default",
        "destination.service.name": "db",
        "destination.service.namespace": "default",
        "destination.service.host": "db.default.svc.cluster.local",
        "destination.labels": {"app": "db", "version": "v1"},
        "connection.mtls": False,
    }
    assert quotas == []


def test_a_tcp_check_carries_only_its_listeners_facts_and_the_varying_attributes() -> None:
    # Served policy decides rules on anything else as absent from TCP Checks: this is what makes that
    # sound. The recorded request, with everything a connection can add: certificates on both sides, SNI.
    request = json_format.Parse(json.dumps(_lines("ext_authz_tcp_check_requests.jsonl")[1]),
                                external_auth_pb2.CheckRequest())
    request.attributes.source.principal = "spiffe://cluster.local/ns/shop/sa/frontend"
    request.attributes.destination.principal = "spiffe://cluster.local/ns/default/sa/db"
    request.attributes.source.certificate = "-----BEGIN CERTIFICATE-----"
    request.attributes.tls_session.sni = "db.default.svc.cluster.local"
    bag, _ = check_request_bag(request, MANIFEST, TRUSTING)
    facts = inbound_tcp_check_facts(dict(request.attributes.destination.labels), MANIFEST)
    assert {name: bag[name] for name in facts} == facts
    assert set(bag) - set(facts) <= TCP_CHECK_VARYING
    assert {"source.principal", "destination.principal", "connection.requested_server_name"} <= set(bag)


def test_rls_descriptor() -> None:
    request = json_format.Parse(json.dumps(_lines("rls_requests.jsonl")[0]), rls_pb2.RateLimitRequest())
    bag, quotas = descriptor_bag(request.domain, request.descriptors[0].entries, MANIFEST)
    assert bag == {"request.path": "/rl/items", "destination.service.name": "upstream"}
    assert quotas == ["mixer"]
    request.descriptors[0].entries.add(key="quota", value="requestcount")
    request.descriptors[0].entries.add(key="source.workload.name", value="frontend-v1")
    bag, quotas = descriptor_bag(request.domain, request.descriptors[0].entries, MANIFEST)
    assert quotas == ["requestcount"]
    assert bag["source.workload.name"] == "frontend-v1"


def test_value_from_text_and_principals() -> None:
    assert value_from_text("x", ValueType.DURATION, "1.5s") == dt.timedelta(seconds=1.5)
    assert value_from_text("x", ValueType.STRING_MAP, '{"a": "b"}') == {"a": "b"}
    with pytest.raises(BagError, match="'x'"):
        value_from_text("x", ValueType.BOOL, "yes")
    assert principal_from_uri("spiffe://cluster.local/ns/a/sa/b") == ("cluster.local/ns/a/sa/b", "a")
