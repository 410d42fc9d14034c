"""Envoy access log service (ALS) entries -> attribute bags.

A stream's identifier names the reporting sidecar once (``stream_base_bag``); each HTTP or TCP entry
then becomes a bag on top of that base (``http_entry_bag``, ``tcp_entry_bag``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from mixer.attributes import Bag, ValueType
from mixer.envoy_attributes.identity import (
    MappingOptions,
    add_peer_from_headers,
    add_peer_principal,
    workload_from_node,
)
from mixer.envoy_attributes.values import (
    add_socket_address,
    add_typed_entries,
    duration_from_proto,
    protocol_from_headers,
    time_after,
    time_from_proto,
)

# Envoy's short response-flag codes, in the order Envoy prints them.
_FLAG_CODES: tuple[tuple[str, str], ...] = (
    ("failed_local_healthcheck", "LH"),
    ("no_healthy_upstream", "UH"),
    ("upstream_request_timeout", "UT"),
    ("local_reset", "LR"),
    ("upstream_remote_reset", "UR"),
    ("upstream_connection_failure", "UF"),
    ("upstream_connection_termination", "UC"),
    ("upstream_overflow", "UO"),
    ("no_route_found", "NR"),
    ("delay_injected", "DI"),
    ("fault_injected", "FI"),
    ("rate_limited", "RL"),
    ("unauthorized_details", "UAEX"),
    ("rate_limit_service_error", "RLSE"),
    ("downstream_connection_termination", "DC"),
    ("upstream_retry_limit_exceeded", "URX"),
    ("stream_idle_timeout", "SI"),
    ("invalid_envoy_request_headers", "IH"),
    ("downstream_protocol_error", "DPE"),
    ("upstream_max_stream_duration_reached", "UMSDR"),
    ("response_from_cache_filter", "RFCF"),
    ("no_filter_config_found", "NFCF"),
    ("duration_timeout", "DT"),
    ("upstream_protocol_error", "UPE"),
    ("no_cluster_found", "NC"),
    ("overload_manager", "OM"),
    ("dns_resolution_failure", "DF"),
    ("downstream_remote_reset", "DR"),
)

_TCP_EVENTS = {
    "TcpUpstreamConnected": "open",
    "TcpPeriodic": "continue",
    "TcpConnectionEnd": "close",
}


def proxy_error_code(flags: Any) -> str:
    """Envoy's short codes for an envoy.data.accesslog.v3.ResponseFlags ("-" when none)."""
    # ListFields yields only the set flags: cheaper than probing all 28.
    present = {descriptor.name for descriptor, value in flags.ListFields() if value}
    if not present:
        return "-"
    return ",".join(code for name, code in _FLAG_CODES if name in present)


def reporter_kind(log_name: str) -> str:
    """``*inbound`` / ``*outbound`` log names (the generator's ``NAME_inbound``) -> reporter kind."""
    lowered = log_name.lower()
    if lowered.endswith("outbound"):
        return "outbound"
    if lowered.endswith("inbound"):
        return "inbound"
    return ""


def stream_base_bag(node: Any, log_name: str) -> tuple[Bag, str]:
    """Attributes shared by every entry of one ALS stream, and the reporter kind they imply."""
    kind = reporter_kind(log_name)
    workload = workload_from_node(node)
    # The reporting sidecar is the server on inbound traffic and the client on outbound traffic.
    side = "source" if kind == "outbound" else "destination"
    bag = workload.attributes(side)
    if kind:
        bag["context.reporter.kind"] = kind
    if workload.uid:
        bag["context.reporter.uid"] = workload.uid
    if node.user_agent_build_version.HasField("version"):
        version = node.user_agent_build_version.version
        bag["context.proxy_version"] = f"{version.major_number}.{version.minor_number}.{version.patch}"
    return bag, kind


def _common(common: Any, bag: Bag, manifest: Mapping[str, ValueType], kind: str) -> None:
    """Attributes every access log entry shares (addresses, times, flags, tags, TLS)."""
    add_socket_address(common.downstream_remote_address, bag, "source")
    if kind == "outbound":
        add_socket_address(common.upstream_remote_address, bag, "destination")
    else:
        add_socket_address(common.downstream_local_address, bag, "destination")
    if common.HasField("start_time"):
        bag["request.time"] = bag["context.time"] = time_from_proto(common.start_time, "request.time")
    error = proxy_error_code(common.response_flags) if common.HasField("response_flags") else "-"
    bag["context.proxy_error_code"] = bag["response.flags"] = error
    if common.HasField("tls_properties"):
        tls = common.tls_properties
        if sni := tls.tls_sni_hostname:
            bag["connection.requested_server_name"] = sni
        peer = tls.peer_certificate_properties
        sans = peer.subject_alt_name
        bag["connection.mtls"] = len(sans) > 0 or bool(peer.subject)
        for san in sans:
            if uri := san.uri:
                # The certificate names the other side of the connection this sidecar accepted/opened.
                add_peer_principal(bag, "destination" if kind == "outbound" else "source", uri)
                break
    else:
        bag["connection.mtls"] = False
    tags = common.custom_tags
    if tags:
        add_typed_entries(tags, manifest, bag)


def http_entry_bag(
    entry: Any, base: Bag, kind: str, manifest: Mapping[str, ValueType], options: MappingOptions
) -> Bag:
    """One envoy.data.accesslog.v3.HTTPAccessLogEntry as a bag, on top of the stream's ``base``."""
    bag = dict(base)
    common = entry.common_properties
    _common(common, bag, manifest, kind)
    request = entry.request
    # A comprehension, not dict(): a protobuf map's keys() is a Python-level view (slower).
    request_headers = request.request_headers
    headers = {key: request_headers[key] for key in request_headers}
    if method := request.request_method:
        bag["request.method"] = _method_names().get(method, "")
    if path := request.path:
        bag["request.path"] = path
        bag["request.url_path"] = path.split("?", 1)[0]
    if authority := request.authority:
        bag["request.host"] = authority
    if scheme := request.scheme:
        bag["request.scheme"] = scheme
    if user_agent := request.user_agent:
        bag["request.useragent"] = user_agent
    if referer := request.referer:
        bag["request.referer"] = referer
    if request_id := request.request_id:
        bag["request.id"] = request_id
    bag["request.headers"] = headers
    body_bytes = request.request_body_bytes
    bag["request.size"] = body_bytes
    bag["request.total_size"] = request.request_headers_bytes + body_bytes
    response = entry.response
    response_map = response.response_headers
    response_headers = {key: response_map[key] for key in response_map}
    if response.HasField("response_code"):
        bag["response.code"] = response.response_code.value
    bag["response.headers"] = response_headers
    body_bytes = response.response_body_bytes
    bag["response.size"] = body_bytes
    bag["response.total_size"] = response.response_headers_bytes + body_bytes
    trailers = response.response_trailers
    if trailers:
        grpc_status = trailers.get("grpc-status") or response_headers.get("grpc-status")
        grpc_message = trailers.get("grpc-message") or response_headers.get("grpc-message")
    else:  # the usual case: no trailers to look in
        grpc_status = response_headers.get("grpc-status")
        grpc_message = response_headers.get("grpc-message")
    if grpc_status:
        bag["response.grpc_status"] = grpc_status
    if grpc_message:
        bag["response.grpc_message"] = grpc_message
    if common.HasField("time_to_last_downstream_tx_byte"):
        duration = duration_from_proto(common.time_to_last_downstream_tx_byte, "response.duration")
    else:
        duration = duration_from_proto(common.duration, "response.duration")
    bag["response.duration"] = duration
    request_time = bag.get("request.time")
    if request_time is not None:
        bag["response.time"] = time_after(request_time, duration, "response.time")
    bag["connection.received.bytes"] = common.downstream_wire_bytes_received
    bag["connection.sent.bytes"] = common.downstream_wire_bytes_sent
    bag["context.protocol"] = protocol_from_headers(headers) if headers.get("content-type") else (
        "grpc" if response_headers.get("content-type", "").startswith("application/grpc") else "http"
    )
    if options.trust_peer_headers:
        # Inbound: the caller's sidecar stamped the request; outbound: the callee's stamped the response.
        if kind == "outbound":
            add_peer_from_headers(response_headers, "destination", bag)
        else:
            add_peer_from_headers(headers, "source", bag)
    return bag


def tcp_entry_bag(entry: Any, base: Bag, kind: str, manifest: Mapping[str, ValueType]) -> Bag:
    """One envoy.data.accesslog.v3.TCPAccessLogEntry as a bag, on top of the stream's ``base``."""
    bag = dict(base)
    common = entry.common_properties
    _common(common, bag, manifest, kind)
    bag["context.protocol"] = "tcp"
    connection = entry.connection_properties
    # Envoy counts bytes from the connection's start in every entry (on connect, periodic, close):
    # these are the totals; the access log door turns connection.*.bytes into the change since
    # the connection's previous entry (TcpByteDeltas).
    bag["connection.received.bytes"] = bag["connection.received.bytes_total"] = connection.received_bytes
    bag["connection.sent.bytes"] = bag["connection.sent.bytes_total"] = connection.sent_bytes
    bag["connection.duration"] = duration_from_proto(common.duration, "connection.duration")
    log_type = _access_log_type_names().get(common.access_log_type, "")
    bag["connection.event"] = _TCP_EVENTS.get(log_type, "close")
    if stream_id := common.stream_id:
        bag["connection.id"] = stream_id
    return bag


# The enum tables are read from the generated protobuf modules on first use, not at import: the
# sidecar generator imports this package (for names.py) and must not pull in protobuf.


@functools.cache
def _access_log_type_names() -> dict[int, str]:
    from envoy.data.accesslog.v3 import accesslog_pb2

    return {number: name for name, number in accesslog_pb2.AccessLogType.items()}


@functools.cache
def _method_names() -> dict[int, str]:
    from envoy.config.core.v3 import base_pb2

    return {number: name for name, number in base_pb2.RequestMethod.items() if number}
