"""Envoy messages (ext_authz CheckRequest, ALS entries, RLS descriptors) -> Istio attribute bags.

The table of what comes from where, and which sources are trusted, is ``docs/envoy-attributes.md``.
Functions here are pure: a protobuf message in, a ``Bag`` out; they never touch the runtime.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from mixer.attributes import Bag, BagError, ValueType, parse_duration, parse_timestamp

# Headers the sidecar generator (proxy/) stamps with the sending side's identity. Anyone who can
# reach a sidecar can set them, so they are read only when ``trust_peer_headers`` is on.
PEER_WORKLOAD_HEADER = "x-mixer-workload"
PEER_NAMESPACE_HEADER = "x-mixer-namespace"

# context_extensions / custom tag key naming the quota instances an ext_authz Check allocates.
QUOTAS_KEY = "mixer.quotas"

# Node metadata keys (Istio's names) carrying a sidecar's own workload identity.
META_WORKLOAD = "WORKLOAD_NAME"
META_NAMESPACE = "NAMESPACE"
META_LABELS = "labels"
META_SERVICE = "SERVICE_NAME"
META_SERVICE_ACCOUNT = "SERVICE_ACCOUNT"
_IDENTITY_LABELS = frozenset({META_WORKLOAD, META_NAMESPACE, META_SERVICE, META_SERVICE_ACCOUNT})

_UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)

# Peers repeat: parsing an address costs ~3 µs, a cache hit ~0.05 µs. Bounded.
_ip = functools.lru_cache(maxsize=4096)(ipaddress.ip_address)

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


@dataclass(frozen=True, slots=True)
class MappingOptions:
    """How much of what a request says about its sender is believed."""

    trust_peer_headers: bool = False  # opt-in: x-mixer-workload/-namespace name the peer (spoofable)


@dataclass(frozen=True, slots=True)
class Workload:
    """One side's identity as a sidecar's bootstrap states it."""

    name: str = ""
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    uid: str = ""
    service: str = ""
    principal: str = ""

    def attributes(self, side: str) -> Bag:
        """This identity as ``source.*`` or ``destination.*`` attributes (absent fields left out)."""
        bag: Bag = {}
        if self.name:
            bag[f"{side}.workload.name"] = self.name
            bag[f"{side}.name"] = self.name
        if self.namespace:
            bag[f"{side}.workload.namespace"] = self.namespace
            bag[f"{side}.namespace"] = self.namespace
        if self.labels:
            bag[f"{side}.labels"] = dict(self.labels)
        if self.uid:
            bag[f"{side}.uid"] = self.uid
        if self.principal:
            bag[f"{side}.principal"] = self.principal
        if side == "destination" and self.service:
            bag["destination.service.name"] = self.service
            if self.namespace:
                bag["destination.service.namespace"] = self.namespace
                bag["destination.service.host"] = f"{self.service}.{self.namespace}.svc.cluster.local"
        return bag


# -- typed values from text ----------------------------------------------------------------------


def value_from_text(name: str, kind: ValueType, text: str) -> Any:
    """Convert a string (context extension, custom tag, descriptor value) to ``kind``'s value."""
    try:
        if kind in (ValueType.STRING, ValueType.EMAIL_ADDRESS, ValueType.DNS_NAME, ValueType.URI, ValueType.ANY):
            return text
        if kind is ValueType.INT64:
            value = int(text)
            if not -(2**63) <= value < 2**63:
                raise ValueError("out of INT64 range")
            return value
        if kind is ValueType.DOUBLE:
            return float(text)
        if kind is ValueType.BOOL:
            lowered = text.strip().lower()
            if lowered not in ("true", "false"):
                raise ValueError("not true or false")
            return lowered == "true"
        if kind is ValueType.DURATION:
            return parse_duration(text)
        if kind is ValueType.TIMESTAMP:
            return parse_timestamp(text)
        if kind is ValueType.IP_ADDRESS:
            return ipaddress.ip_address(text)
        if kind is ValueType.STRING_MAP:
            raw = orjson.loads(text)
            if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
                raise ValueError("not a JSON object of strings")
            return raw
        if kind is ValueType.BYTES:
            return base64.b64decode(text, validate=True)
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise BagError(name, f"expected {kind.value}, got {text!r} ({exc})") from None
    raise BagError(name, f"unsupported type {kind.value}")


def typed_entries(pairs: Mapping[str, str], manifest: Mapping[str, ValueType], bag: Bag) -> None:
    """Copy entries whose key is an attribute name into ``bag``, typed by the manifest."""
    for key, text in pairs.items():
        kind = manifest.get(key)
        if kind is not None:
            bag[key] = value_from_text(key, kind, text)


# -- small helpers -----------------------------------------------------------------------------


def principal_from_uri(uri: str) -> tuple[str, str]:
    """``spiffe://cluster.local/ns/NS/sa/SA`` -> (Istio principal ``cluster.local/ns/NS/sa/SA``, NS)."""
    principal = uri[len("spiffe://"):] if uri.startswith("spiffe://") else uri
    parts = principal.split("/")
    namespace = ""
    for i in range(len(parts) - 1):
        if parts[i] == "ns":
            namespace = parts[i + 1]
            break
    return principal, namespace


def _peer_principal(bag: Bag, side: str, principal: str) -> None:
    if not principal:
        return
    name, namespace = principal_from_uri(principal)
    bag[f"{side}.principal"] = name
    if namespace:
        bag.setdefault(f"{side}.namespace", namespace)
        bag.setdefault(f"{side}.workload.namespace", namespace)


def _socket(address: Any, bag: Bag, side: str) -> None:
    """``address`` is an envoy.config.core.v3.Address; pipes and unset addresses are skipped."""
    sock = address.socket_address
    if not sock.address:
        return
    try:
        bag[f"{side}.ip"] = _ip(sock.address)
    except ValueError:
        return
    if sock.port_value:
        bag[f"{side}.port"] = sock.port_value


def _struct_strings(struct: Any) -> dict[str, str]:
    """The string-valued fields of a google.protobuf.Struct."""
    out: dict[str, str] = {}
    for key, value in struct.fields.items():
        if value.WhichOneof("kind") == "string_value":
            out[key] = value.string_value
    return out


def proxy_error_code(flags: Any) -> str:
    """Envoy's short codes for an envoy.data.accesslog.v3.ResponseFlags ("-" when none)."""
    # ListFields yields only the set flags: cheaper than probing all 28.
    present = {descriptor.name for descriptor, value in flags.ListFields() if value}
    if not present:
        return "-"
    return ",".join(code for name, code in _FLAG_CODES if name in present)


def _time(stamp: Any) -> dt.datetime:
    """A google.protobuf.Timestamp as an aware datetime (faster than ToDatetime)."""
    return _EPOCH + dt.timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


def _duration(value: Any) -> dt.timedelta:
    """A google.protobuf.Duration as a timedelta (faster than ToTimedelta)."""
    return dt.timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def _protocol(headers: Mapping[str, str]) -> str:
    return "grpc" if headers.get("content-type", "").startswith("application/grpc") else "http"


def _peer_from_headers(headers: Mapping[str, str], side: str, bag: Bag) -> None:
    name = headers.get(PEER_WORKLOAD_HEADER)
    if name:
        bag.setdefault(f"{side}.workload.name", name)
        bag.setdefault(f"{side}.name", name)
    namespace = headers.get(PEER_NAMESPACE_HEADER)
    if namespace:
        bag.setdefault(f"{side}.workload.namespace", namespace)
        bag.setdefault(f"{side}.namespace", namespace)


def quota_names(text: str) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``: a comma-separated list of quota instance names."""
    return [name.strip() for name in text.split(",") if name.strip()]


# -- nodes (ALS identifier) --------------------------------------------------------------------


def workload_from_node(node: Any) -> Workload:
    """A sidecar's own identity from its envoy.config.core.v3.Node (bootstrap, so trusted)."""
    fields = node.metadata.fields
    meta = _struct_strings(node.metadata)
    labels: dict[str, str] = {}
    if META_LABELS in fields and fields[META_LABELS].WhichOneof("kind") == "struct_value":
        labels = {
            k: v for k, v in _struct_strings(fields[META_LABELS].struct_value).items() if k not in _IDENTITY_LABELS
        }
    namespace = meta.get(META_NAMESPACE, "")
    account = meta.get(META_SERVICE_ACCOUNT, "")
    principal = f"cluster.local/ns/{namespace}/sa/{account}" if account and namespace else ""
    return Workload(
        name=meta.get(META_WORKLOAD, ""),
        namespace=namespace,
        labels=labels,
        uid=f"kubernetes://{node.id}" if node.id else "",
        service=meta.get(META_SERVICE, "") or node.cluster,
        principal=principal,
    )


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


# -- ALS entries -------------------------------------------------------------------------------


def _common(common: Any, bag: Bag, manifest: Mapping[str, ValueType], kind: str) -> None:
    """Attributes every access log entry shares (addresses, times, flags, tags, TLS)."""
    _socket(common.downstream_remote_address, bag, "source")
    if kind == "outbound":
        _socket(common.upstream_remote_address, bag, "destination")
    else:
        _socket(common.downstream_local_address, bag, "destination")
    if common.HasField("start_time"):
        bag["request.time"] = _time(common.start_time)
        bag["context.time"] = bag["request.time"]
    error = proxy_error_code(common.response_flags) if common.HasField("response_flags") else "-"
    bag["context.proxy_error_code"] = error
    bag["response.flags"] = error
    if common.HasField("tls_properties"):
        tls = common.tls_properties
        if tls.tls_sni_hostname:
            bag["connection.requested_server_name"] = tls.tls_sni_hostname
        peer = tls.peer_certificate_properties
        bag["connection.mtls"] = len(peer.subject_alt_name) > 0 or bool(peer.subject)
        for san in peer.subject_alt_name:
            if san.uri:
                # The certificate names the other side of the connection this sidecar accepted/opened.
                _peer_principal(bag, "destination" if kind == "outbound" else "source", san.uri)
                break
    else:
        bag["connection.mtls"] = False
    if common.custom_tags:
        typed_entries(common.custom_tags, manifest, bag)


def http_entry_bag(
    entry: Any, base: Bag, kind: str, manifest: Mapping[str, ValueType], options: MappingOptions
) -> Bag:
    """One envoy.data.accesslog.v3.HTTPAccessLogEntry as a bag, on top of the stream's ``base``."""
    bag = dict(base)
    common = entry.common_properties
    _common(common, bag, manifest, kind)
    request = entry.request
    headers = dict(request.request_headers)
    if request.request_method:
        bag["request.method"] = _METHOD_NAMES.get(request.request_method, "")
    if request.path:
        bag["request.path"] = request.path
        bag["request.url_path"] = request.path.split("?", 1)[0]
    if request.authority:
        bag["request.host"] = request.authority
    if request.scheme:
        bag["request.scheme"] = request.scheme
    if request.user_agent:
        bag["request.useragent"] = request.user_agent
    if request.referer:
        bag["request.referer"] = request.referer
    if request.request_id:
        bag["request.id"] = request.request_id
    bag["request.headers"] = headers
    bag["request.size"] = request.request_body_bytes
    bag["request.total_size"] = request.request_headers_bytes + request.request_body_bytes
    response = entry.response
    response_headers = dict(response.response_headers)
    if response.HasField("response_code"):
        bag["response.code"] = response.response_code.value
    bag["response.headers"] = response_headers
    bag["response.size"] = response.response_body_bytes
    bag["response.total_size"] = response.response_headers_bytes + response.response_body_bytes
    grpc_status = response.response_trailers.get("grpc-status") or response_headers.get("grpc-status")
    if grpc_status:
        bag["response.grpc_status"] = grpc_status
    grpc_message = response.response_trailers.get("grpc-message") or response_headers.get("grpc-message")
    if grpc_message:
        bag["response.grpc_message"] = grpc_message
    if common.HasField("time_to_last_downstream_tx_byte"):
        duration = _duration(common.time_to_last_downstream_tx_byte)
    else:
        duration = _duration(common.duration)
    bag["response.duration"] = duration
    if "request.time" in bag:
        bag["response.time"] = bag["request.time"] + duration
    bag["connection.received.bytes"] = common.downstream_wire_bytes_received
    bag["connection.sent.bytes"] = common.downstream_wire_bytes_sent
    bag["context.protocol"] = _protocol(headers) if headers.get("content-type") else (
        "grpc" if response_headers.get("content-type", "").startswith("application/grpc") else "http"
    )
    if options.trust_peer_headers:
        # Inbound: the caller's sidecar stamped the request; outbound: the callee's stamped the response.
        if kind == "outbound":
            _peer_from_headers(response_headers, "destination", bag)
        else:
            _peer_from_headers(headers, "source", bag)
    return bag


def tcp_entry_bag(entry: Any, base: Bag, kind: str, manifest: Mapping[str, ValueType]) -> Bag:
    """One envoy.data.accesslog.v3.TCPAccessLogEntry as a bag, on top of the stream's ``base``."""
    bag = dict(base)
    common = entry.common_properties
    _common(common, bag, manifest, kind)
    bag["context.protocol"] = "tcp"
    connection = entry.connection_properties
    bag["connection.received.bytes"] = connection.received_bytes
    bag["connection.sent.bytes"] = connection.sent_bytes
    # Envoy's counts are the connection's so far (periodic entries repeat them): Istio's totals.
    bag["connection.received.bytes_total"] = connection.received_bytes
    bag["connection.sent.bytes_total"] = connection.sent_bytes
    bag["connection.duration"] = _duration(common.duration)
    log_type = _ACCESS_LOG_TYPE_NAMES.get(common.access_log_type, "")
    bag["connection.event"] = _TCP_EVENTS.get(log_type, "close")
    if stream_id := common.stream_id:
        bag["connection.id"] = stream_id
    return bag


def _access_log_type_names() -> dict[int, str]:
    from envoy.data.accesslog.v3 import accesslog_pb2

    return {number: name for name, number in accesslog_pb2.AccessLogType.items()}


_ACCESS_LOG_TYPE_NAMES = _access_log_type_names()


def _method_names() -> dict[int, str]:
    from envoy.config.core.v3 import base_pb2

    return {number: name for name, number in base_pb2.RequestMethod.items() if number}


_METHOD_NAMES = _method_names()


# -- ext_authz ---------------------------------------------------------------------------------


def check_request_bag(
    request: Any, manifest: Mapping[str, ValueType], options: MappingOptions
) -> tuple[Bag, list[str]]:
    """An envoy.service.auth.v3.CheckRequest as a bag, plus the quota instances it asks for.

    The checking sidecar is the destination (the generator puts ext_authz on inbound listeners);
    its labels come from bootstrap node metadata (``bootstrap_metadata_labels_key``).
    """
    attrs = request.attributes
    bag: Bag = {"context.reporter.kind": "inbound"}
    source, destination = attrs.source, attrs.destination
    _socket(source.address, bag, "source")
    _socket(destination.address, bag, "destination")
    if destination.labels:
        labels = dict(destination.labels)
        if name := labels.get(META_WORKLOAD):
            bag["destination.workload.name"] = name
            bag["destination.name"] = name
        if namespace := labels.get(META_NAMESPACE):
            bag["destination.workload.namespace"] = namespace
            bag["destination.namespace"] = namespace
        bag["destination.labels"] = {k: v for k, v in labels.items() if k not in _IDENTITY_LABELS}
    _peer_principal(bag, "source", source.principal)
    _peer_principal(bag, "destination", destination.principal)
    bag["connection.mtls"] = bool(source.principal or source.certificate)
    if attrs.HasField("tls_session") and attrs.tls_session.sni:
        bag["connection.requested_server_name"] = attrs.tls_session.sni
    http = attrs.request.http
    headers = dict(http.headers)
    if attrs.request.HasField("time"):
        bag["request.time"] = _time(attrs.request.time)
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
    if request_id := headers.get("x-request-id"):
        bag["request.id"] = request_id
    if agent := headers.get("user-agent"):
        bag["request.useragent"] = agent
    if referer := headers.get("referer"):
        bag["request.referer"] = referer
    bag["context.protocol"] = _protocol(headers)
    if options.trust_peer_headers:
        _peer_from_headers(headers, "source", bag)
        if service := source.service:
            bag.setdefault("source.services", service)
    quotas: list[str] = []
    extensions = attrs.context_extensions
    if extensions:
        typed_entries(extensions, manifest, bag)
        if names := extensions.get(QUOTAS_KEY):
            quotas = quota_names(names)
    return bag, quotas


def _query_params(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key:
            params.setdefault(key, value)
    return params


# -- rate limit service ------------------------------------------------------------------------

# Envoy rate limit actions' default descriptor keys -> attributes.
_RLS_KEYS = {
    "remote_address": "source.ip",
    "path": "request.path",
    "method": "request.method",
    "destination_cluster": "destination.service.name",
}


def descriptor_bag(domain: str, entries: Any, manifest: Mapping[str, ValueType]) -> tuple[Bag, list[str]]:
    """One RateLimitDescriptor as a bag, plus the quota instances it names.

    Keys that are attribute names are typed by the manifest; Envoy's default action keys map as in
    ``_RLS_KEYS``; the ``quota`` key names the quota instances (comma-separated). Without it the
    domain names the quota instance.
    """
    bag: Bag = {}
    quotas: list[str] = []
    for entry in entries:
        key, value = entry.key, entry.value
        if key == "quota":
            quotas.extend(quota_names(value))
            continue
        name = key if key in manifest else _RLS_KEYS.get(key)
        if name is not None and name in manifest:
            bag[name] = value_from_text(name, manifest[name], value)
    if not quotas and domain:
        quotas = [domain]
    return bag, quotas
