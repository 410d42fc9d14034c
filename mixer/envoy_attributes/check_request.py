"""Envoy ext_authz CheckRequest -> an attribute bag and the quota instances the Check allocates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mixer.attributes import Bag, ValueType
from mixer.envoy_attributes.identity import (
    MappingOptions,
    add_destination_from_labels,
    add_peer_from_headers,
    add_peer_principal,
)
from mixer.envoy_attributes.names import PEER_WORKLOAD_HEADER, QUOTAS_KEY
from mixer.envoy_attributes.values import (
    add_socket_address,
    add_typed_entries,
    protocol_from_headers,
    quota_names,
    time_from_proto,
)


def check_request_bag(
    request: Any, manifest: Mapping[str, ValueType], options: MappingOptions
) -> tuple[Bag, list[str]]:
    """An envoy.service.auth.v3.CheckRequest as a bag, plus the quota instances it asks for.

    The checking sidecar is the destination (the generator puts ext_authz on inbound listeners);
    its labels come from bootstrap node metadata (``bootstrap_metadata_labels_key``). A request
    without HTTP attributes is the network filter's check of a TCP connection
    (``context.protocol`` "tcp"; addresses, peer certificates and the sidecar's labels only).
    """
    attrs = request.attributes
    bag: Bag = {"context.reporter.kind": "inbound"}
    source, destination = attrs.source, attrs.destination
    add_socket_address(source.address, bag, "source")
    add_socket_address(destination.address, bag, "destination")
    if destination.labels:
        add_destination_from_labels(dict(destination.labels), bag)
    add_peer_principal(bag, "source", source.principal)
    add_peer_principal(bag, "destination", destination.principal)
    bag["connection.mtls"] = bool(source.principal or source.certificate)
    if attrs.HasField("tls_session") and attrs.tls_session.sni:
        bag["connection.requested_server_name"] = attrs.tls_session.sni
    if attrs.request.HasField("http"):
        _add_http(attrs, bag, options)
    else:
        # envoy.filters.network.ext_authz: a TCP connection, checked once when it opens.
        bag["context.protocol"] = "tcp"
    quotas: list[str] = []
    extensions = attrs.context_extensions
    if extensions:
        add_typed_entries(extensions, manifest, bag)
        if names := extensions.get(QUOTAS_KEY):
            quotas = quota_names(names)
    return bag, quotas


def _add_http(attrs: Any, bag: Bag, options: MappingOptions) -> None:
    http = attrs.request.http
    headers = dict(http.headers)
    if attrs.request.HasField("time"):
        bag["request.time"] = time_from_proto(attrs.request.time, "request.time")
        bag["context.time"] = bag["request.time"]
    if http.method:
        bag["request.method"] = http.method
    if http.path:
        bag["request.path"] = http.path
        url_path, _, query = http.path.partition("?")
        bag["request.url_path"] = url_path
        if query:
            bag["request.query_params"] = _query_params(query)
    if http.host:
        bag["request.host"] = http.host
    if http.scheme:
        bag["request.scheme"] = http.scheme
    bag["request.headers"] = headers
    if http.size >= 0:
        bag["request.size"] = http.size
    _add_from_headers(headers, bag, options)
    if options.trust_peer_headers and (service := attrs.source.service):
        bag.setdefault("source.services", service)


def _add_from_headers(headers: Mapping[str, str], bag: Bag, options: MappingOptions) -> None:
    """What a Check's request headers say, whichever transport it came by (gRPC or HTTP ext_authz);
    the caller's identity headers only with ``trust_peer_headers``, never over facts already set."""
    if request_id := headers.get("x-request-id"):
        bag["request.id"] = request_id
    if agent := headers.get("user-agent"):
        bag["request.useragent"] = agent
    if referer := headers.get("referer"):
        bag["request.referer"] = referer
    bag["context.protocol"] = protocol_from_headers(headers)
    if options.trust_peer_headers:
        add_peer_from_headers(headers, "source", bag)


# Attributes of a Check that only a request header can set (with ``trust_peer_headers``): nothing
# else in ``check_request_bag`` writes them, so a proxy testing the header tests the attribute.
HEADER_ONLY_ATTRIBUTES = {"source.workload.name": PEER_WORKLOAD_HEADER, "source.name": PEER_WORKLOAD_HEADER}


def inbound_check_facts(
    labels: Mapping[str, str], extensions: Mapping[str, str], manifest: Mapping[str, ValueType]
) -> Bag:
    """The attributes every Check from one inbound listener carries whatever the request: what
    ``check_request_bag`` takes from the checking sidecar's bootstrap (its metadata labels, the
    listener's context extensions). Kept next to it so the two cannot drift apart; anything else
    (the caller, the request, the connection) is left out, i.e. unknown in advance."""
    facts: Bag = {"context.reporter.kind": "inbound"}
    if labels:
        add_destination_from_labels(dict(labels), facts)
    add_typed_entries(extensions, manifest, facts)  # applied last in check_request_bag too
    return facts


# Everything ``check_request_bag`` may add to a network ext_authz Check (a TCP connection) beyond the
# listener's fixed facts (``inbound_tcp_check_facts``): the connection's addresses and peers. Any other
# attribute is surely absent from such a Check, so served policy decides rules on it (request.path...).
TCP_CHECK_VARYING = frozenset({
    "source.ip", "source.port", "destination.ip", "destination.port",
    "source.principal", "source.namespace", "source.workload.namespace",
    "destination.principal", "destination.namespace", "destination.workload.namespace",
    "connection.mtls", "connection.requested_server_name",
})


def inbound_tcp_check_facts(labels: Mapping[str, str], manifest: Mapping[str, ValueType]) -> Bag:
    """The attributes every network ext_authz Check of one inbound TCP listener carries: the sidecar's
    labels and ``context.protocol`` "tcp" (that filter sends no context extensions)."""
    facts = inbound_check_facts(labels, {}, manifest)
    facts["context.protocol"] = "tcp"
    return facts


def http_check_bag(
    method: str, path: str, headers: Mapping[str, str], facts: Bag, options: MappingOptions
) -> Bag:
    """An ext_authz HTTP-service authorization request (Envoy forwards the original request's method,
    path and headers) as a bag, on top of the listener's fixed ``facts`` (``inbound_check_facts``).

    Compared with the gRPC CheckRequest it carries no addresses, times, certificates or TLS data:
    rules on those never see them on this transport.
    """
    bag: Bag = dict(facts)
    if method:
        bag["request.method"] = method
    if path:
        bag["request.path"] = path
        url_path, _, query = path.partition("?")
        bag["request.url_path"] = url_path
        if query:
            bag["request.query_params"] = _query_params(query)
    if host := headers.get("host"):
        bag["request.host"] = host
    bag["request.headers"] = dict(headers)
    _add_from_headers(headers, bag, options)
    return bag


def _query_params(query: str) -> dict[str, str]:
    """``a=1&b=2`` -> ``{"a": "1", "b": "2"}``; the first of repeated keys wins, values stay encoded."""
    params: dict[str, str] = {}
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key:
            params.setdefault(key, value)
    return params
