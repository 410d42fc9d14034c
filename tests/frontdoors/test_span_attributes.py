"""Spans as bags: OTLP spans (Envoy's tracer's shape) and the spans derived from recorded Envoy
access log entries for sidecars that do not trace."""

from __future__ import annotations

import datetime as dt

import pytest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from mixer.attributes import BagError, default_manifest
from mixer.envoy_attributes import MappingOptions, http_entry_bag, stream_base_bag
from mixer.frontdoors.span_attributes import otlp_span_bag, request_span, resource_base_bag
from tests.frontdoors.test_envoy_attributes import _entries, _node_message

MANIFEST = default_manifest()


def _envoy_span(**attributes: object) -> trace_pb2.Span:
    """A client span as Envoy's OpenTelemetry tracer sends it (tags from a recorded export)."""
    span = trace_pb2.Span(trace_id=bytes.fromhex("62916bb25f2381b9273ddc9ba6e7c8d9"),
                          span_id=bytes.fromhex("e4e959321cece3b0"), name="egress 127.0.0.1:59877",
                          kind=trace_pb2.Span.SPAN_KIND_CLIENT, start_time_unix_nano=1_795_694_400_000_000_000,
                          end_time_unix_nano=1_795_694_400_028_583_000)
    tags = {"node_id": "a-v1.default", "guid:x-request-id": "416dca9b-5b82-9177-af82-0a02a60d9e1e",
            "http.url": "http://127.0.0.1:59877/hello?x=1", "http.method": "GET", "http.protocol": "HTTP/1.1",
            "request_size": "0", "response_size": "39", "upstream_cluster": "outbound_59877_b",
            "http.status_code": "503", "response_flags": "UF", "source.workload.name": "a-v1",
            "source.labels": '{"app": "a", "version": "v1"}', "x-mixer-workload": "b-v1", **attributes}
    for key, value in tags.items():
        any_value = (common_pb2.AnyValue(int_value=value) if isinstance(value, int) and not isinstance(value, bool)
                     else common_pb2.AnyValue(bool_value=value) if isinstance(value, bool)
                     else common_pb2.AnyValue(string_value=str(value)))
        span.attributes.add(key=key, value=any_value)
    return span


def _base() -> dict[str, object]:
    resource = resource_pb2.Resource()
    resource.attributes.add(key="service.name", value=common_pb2.AnyValue(string_value="a"))
    return resource_base_bag(resource, MANIFEST)


def test_an_envoy_span_maps_to_span_request_and_identity_attributes() -> None:
    bag = otlp_span_bag(_envoy_span(retries=2, sampled=True), _base(), MANIFEST)
    assert bag["span.trace_id"] == "62916bb25f2381b9273ddc9ba6e7c8d9" and bag["span.id"] == "e4e959321cece3b0"
    assert "span.parent_id" not in bag  # a root span
    assert (bag["span.kind"], bag["context.reporter.kind"], bag["context.protocol"]) == ("client", "outbound", "otlp")
    assert bag["span.service"] == "a" and bag["span.resource"] == {"service.name": "a"}
    assert bag["span.status_code"] == "UNSET"
    assert bag["response.duration"] == dt.timedelta(microseconds=28583)
    assert bag["span.start_time"] == bag["request.time"] == dt.datetime(2026, 11, 26, 12, tzinfo=dt.timezone.utc)
    assert (bag["request.method"], bag["request.host"], bag["request.path"], bag["request.url_path"]) == \
        ("GET", "127.0.0.1:59877", "/hello?x=1", "/hello")
    assert (bag["response.code"], bag["response.size"], bag["request.size"]) == (503, 39, 0)
    assert bag["request.id"] == "416dca9b-5b82-9177-af82-0a02a60d9e1e"
    assert bag["response.flags"] == bag["context.proxy_error_code"] == "UF"
    assert bag["source.workload.name"] == "a-v1"  # an attribute name: typed in
    assert bag["source.labels"] == {"app": "a", "version": "v1"}
    assert "destination.workload.name" not in bag  # the peer header is not trusted by default
    assert bag["span.attributes"]["retries"] == "2" and bag["span.attributes"]["sampled"] == "true"
    trusted = otlp_span_bag(_envoy_span(), _base(), MANIFEST, trust_peer_headers=True)
    assert trusted["destination.workload.name"] == "b-v1"  # a client span's peer is the callee


def test_resource_attributes_named_by_attribute_are_typed_into_every_span_of_the_resource() -> None:
    resource = resource_pb2.Resource()
    for key, value in (("service.name", "a"), ("source.workload.name", "a-v0"), ("source.labels", '{"app": "a"}'),
                       ("destination.service.name", "b")):
        resource.attributes.add(key=key, value=common_pb2.AnyValue(string_value=value))
    base = resource_base_bag(resource, MANIFEST)
    assert base["source.labels"] == {"app": "a"} and base["destination.service.name"] == "b"
    bag = otlp_span_bag(_envoy_span(), base, MANIFEST)
    assert bag["source.workload.name"] == "a-v1"  # the span's own attribute wins
    assert bag["source.labels"] == {"app": "a", "version": "v1"}
    assert bag["destination.service.name"] == "b"
    assert "destination.service.name" not in bag["span.attributes"]
    bad = resource_pb2.Resource()
    bad.attributes.add(key="source.labels", value=common_pb2.AnyValue(string_value="{not json"))
    with pytest.raises(BagError, match="source.labels"):
        resource_base_bag(bad, MANIFEST)


def test_semantic_convention_names_win_over_envoys_older_ones() -> None:
    bag = otlp_span_bag(_envoy_span(**{
        "http.response.status_code": 201, "http.request.method": "POST", "url.full": "https://c:8443/new?y=2",
        "user_agent.original": "curl/8", "http.request.body.size": "7", "http.response.body.size": "many"}),
        _base(), MANIFEST)
    assert (bag["response.code"], bag["request.method"], bag["request.useragent"]) == (201, "POST", "curl/8")
    assert (bag["request.scheme"], bag["request.host"], bag["request.path"], bag["request.url_path"]) == \
        ("https", "c:8443", "/new?y=2", "/new")
    assert bag["request.size"] == 7
    assert "response.size" not in bag  # a malformed size stays in span.attributes only
    assert bag["span.attributes"]["http.response.body.size"] == "many"


def test_without_a_url_the_path_and_query_attributes_give_the_request_path() -> None:
    span = _envoy_span(**{"url.path": "/items", "url.query": "page=2"})
    del span.attributes[[kv.key for kv in span.attributes].index("http.url")]
    bag = otlp_span_bag(span, _base(), MANIFEST)
    assert (bag["request.url_path"], bag["request.path"]) == ("/items", "/items?page=2")
    assert "request.host" not in bag


def test_a_span_whose_attribute_does_not_fit_its_type_is_refused() -> None:
    with pytest.raises(BagError, match="source.labels"):
        otlp_span_bag(_envoy_span(**{"source.labels": "not json"}), _base(), MANIFEST)
    with pytest.raises(BagError, match="span.parent_id"):
        otlp_span_bag(trace_pb2.Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, parent_span_id=b"\x03"), {}, MANIFEST)


def _als_pair(request_id: str = "c271dfd2-24b7-4d3a-975b-5b19a8061f12", path: str = "/hello",
              headers: dict[str, str] | None = None) -> tuple[dict[str, object], dict[str, object]]:
    """The outbound and inbound access log bags of one request (the same recorded entry, logged by both sides)."""
    node = _node_message().identifier.node
    entry = _entries()[0]
    entry.request.request_id = request_id
    entry.request.path = path
    for key, value in (headers or {}).items():
        entry.request.request_headers[key] = value
    bags = []
    for kind in ("outbound", "inbound"):
        base, _ = stream_base_bag(node, f"x_{kind}")
        bags.append(request_span(http_entry_bag(entry, base, kind, MANIFEST, MappingOptions()), kind))
    return bags[0], bags[1]


def test_both_sides_of_an_untraced_hop_derive_one_linked_pair_of_spans() -> None:
    client, server = _als_pair()
    assert client["span.trace_id"] == server["span.trace_id"] == "c271dfd224b74d3a975b5b19a8061f12"
    assert (client["span.kind"], server["span.kind"]) == ("client", "server")
    assert server["span.parent_id"] == client["span.id"] != server["span.id"]
    assert "span.parent_id" not in client
    assert all(len(str(bag["span.id"])) == 16 for bag in (client, server))
    assert client["span.start_time"] == client["request.time"] and client["span.end_time"] == client["response.time"]
    other_hop, _ = _als_pair(path="/other")  # the same request id on another call: another span
    assert other_hop["span.id"] != client["span.id"] and other_hop["span.trace_id"] == client["span.trace_id"]


def test_a_traceparent_puts_the_hop_into_the_callers_trace() -> None:
    header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    client, server = _als_pair(headers={"traceparent": header})
    assert client["span.trace_id"] == server["span.trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert client["span.parent_id"] == "00f067aa0ba902b7"
    assert server["span.parent_id"] == client["span.id"]


def test_without_a_request_id_no_span_is_derived() -> None:
    client, server = _als_pair(request_id="")
    assert not any(key.startswith("span.") for key in (*client, *server))
    not_a_uuid, _ = _als_pair(request_id="req-7")
    assert not any(key.startswith("span.") for key in not_a_uuid)
    not_hex, _ = _als_pair(request_id="c271dfd2-24b7-4d3a-975b-5b19a8061f1g")  # 32 digits, one not hex
    assert not any(key.startswith("span.") for key in not_hex)
