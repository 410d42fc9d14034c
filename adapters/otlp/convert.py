"""tracespan and logentry instances -> OTLP messages (pure), and export requests from them.

Span tags become span attributes, with a few reserved names read as OpenTelemetry's non-OTLP
exporters write them: ``service.name`` (the resource's; else the source's name for a client span
and the destination's for a server span), ``span.kind`` (client, server, internal, producer,
consumer; else ``client_span`` decides), ``otel.status_code`` / ``otel.status_description``.
A tag whose value is a map is spread into one attribute per entry (a tag of the same name wins);
an empty or absent value is left out. HTTP fields use the semantic convention names (``http.response.status_code``, ...); the
status is ERROR for a 5xx answer, and for a 4xx answer on a client span (OpenTelemetry's HTTP
conventions), or when ``otel.status_code`` says so.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from adapters.otlp import wire
from mixer.attributes import format_duration, format_timestamp
from mixer.sdk import EncodedAttributes

SCOPE_NAME = "mixer"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICRO = dt.timedelta(microseconds=1)
_CLIENT, _SERVER = trace_pb2.Span.SPAN_KIND_CLIENT, trace_pb2.Span.SPAN_KIND_SERVER
_KINDS = {
    "internal": trace_pb2.Span.SPAN_KIND_INTERNAL,
    "server": trace_pb2.Span.SPAN_KIND_SERVER,
    "client": trace_pb2.Span.SPAN_KIND_CLIENT,
    "producer": trace_pb2.Span.SPAN_KIND_PRODUCER,
    "consumer": trace_pb2.Span.SPAN_KIND_CONSUMER,
}
_STATUS = {"OK": trace_pb2.Status.STATUS_CODE_OK, "ERROR": trace_pb2.Status.STATUS_CODE_ERROR}
_RESERVED = frozenset({"service.name", "span.kind", "otel.status_code", "otel.status_description"})
# tracespan field -> semantic convention attribute
_NUMBERS = (
    ("request_size", "http.request.body.size"),
    ("response_size", "http.response.body.size"),
    ("request_total_size", "http.request.size"),
    ("response_total_size", "http.response.size"),
)
_SEVERITY = {  # logentry severity text -> OpenTelemetry SeverityNumber
    "TRACE": 1, "DEBUG": 5, "INFO": 9, "DEFAULT": 9, "NOTICE": 10, "WARN": 13, "WARNING": 13,
    "ERROR": 17, "CRITICAL": 21, "ALERT": 22, "EMERGENCY": 23, "FATAL": 21,
}


class InvalidInstance(ValueError):
    """An instance that cannot become an OTLP message (a malformed id): dropped and counted."""


def span_ids(fields: Mapping[str, Any]) -> tuple[bytes, bytes, bytes]:
    """The trace, span and parent ids of a tracespan's fields as bytes (the parent may be empty)."""
    try:
        trace_id = bytes.fromhex(fields.get("trace_id") or "")
        span_id = bytes.fromhex(fields.get("span_id") or "")
        parent_id = bytes.fromhex(fields.get("parent_span_id") or "")
    except (ValueError, TypeError) as exc:
        raise InvalidInstance(f"ids must be hex: {exc}") from None
    if len(trace_id) != 16 or not any(trace_id):
        raise InvalidInstance(f"trace id must be 32 hex digits, not all zero: {fields.get('trace_id')!r}")
    if len(span_id) != 8 or not any(span_id):
        raise InvalidInstance(f"span id must be 16 hex digits, not all zero: {fields.get('span_id')!r}")
    if parent_id and len(parent_id) != 8:
        raise InvalidInstance(f"parent span id must be 16 hex digits: {fields.get('parent_span_id')!r}")
    return trace_id, span_id, parent_id


def keeps(trace_id: bytes, ratio: float) -> bool:
    """OpenTelemetry's TraceIdRatioBased decision: the same for every span of a trace, on every replica."""
    return ratio >= 1.0 or int.from_bytes(trace_id[8:], "big") < round(ratio * 2**64)


def rewritten_client_id(span_id: bytes) -> bytes:
    """Mixer's ``rewrite_client_span_id``: when both proxies of a hop report one span id, the client
    span takes this id and the server span becomes its child."""
    return hashlib.blake2b(span_id + b"client", digest_size=8).digest()


def _nanos(value: Any) -> int:
    if isinstance(value, dt.datetime):
        return ((value - _EPOCH) // _MICRO) * 1000
    return 0


def any_value(value: Any) -> common_pb2.AnyValue:
    """A Python value (a bag's or an instance's) as an OTLP AnyValue."""
    if isinstance(value, str):
        return common_pb2.AnyValue(string_value=value)
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, bytes):
        return common_pb2.AnyValue(bytes_value=value)
    if isinstance(value, Mapping):
        return common_pb2.AnyValue(
            kvlist_value=common_pb2.KeyValueList(values=[_key_value(str(k), v) for k, v in value.items()])
        )
    if isinstance(value, dt.datetime):
        return common_pb2.AnyValue(string_value=format_timestamp(value))
    if isinstance(value, dt.timedelta):
        return common_pb2.AnyValue(string_value=format_duration(value))
    return common_pb2.AnyValue(string_value=str(value))


def _key_value(key: str, value: Any) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=any_value(value))


_ADDRESSES = (("source_ip", "client.address"), ("destination_ip", "server.address"))
_IP_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address)


@functools.lru_cache(maxsize=1024)
def _address_text(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An address as text: remembered, as a mesh's addresses repeat and ``str`` is Python code."""
    return str(address)


def _named(value: Any) -> str:
    return value if isinstance(value, str) and value not in ("", "unknown") else ""


_WRITER = wire.AttributeWriter(0x4A)  # Span.attributes is field 9


def tracespan_to_span(fields: Mapping[str, Any], ids: tuple[bytes, bytes, bytes]) -> tuple[str, bytes]:
    """One tracespan instance's fields as (resource service name, the OTLP span's encoding)."""
    trace_id, span_id, parent_id = ids
    tags: Mapping[str, Any] = fields.get("span_tags") or {}
    kind_name = tags.get("span.kind")
    kind = _KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        kind = _CLIENT if fields.get("client_span") else _SERVER
    client = kind == _CLIENT
    if fields.get("rewrite_client_span_id"):
        if client:
            span_id = rewritten_client_id(span_id)
        else:
            parent_id = rewritten_client_id(span_id)
    write, known = _WRITER.write, _WRITER.known
    parts: list[bytes] = []
    append = parts.append
    for key, value in tags.items():
        if type(value) is str:  # most tags: checked first, without an ABC isinstance
            if value and key not in _RESERVED:
                append(known((key, value)) or write(key, value))
        elif type(value) is EncodedAttributes:
            append(_spread_encoded(value.wire, tags))
        elif isinstance(value, Mapping):
            for inner, text in value.items():
                # a tag of its own wins over the same key in a spread map: OTLP keys are unique
                if text != "" and tags.get(inner) in (None, ""):
                    append(write(inner, text))
        elif value is not None and key not in _RESERVED:
            append(write(key, value))
    code = fields.get("http_status_code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
    if code > 0:
        append(known(("http.response.status_code", code)) or write("http.response.status_code", code))
    for field_name, attribute in _NUMBERS:
        size = fields.get(field_name)
        if type(size) is int:
            append(known((attribute, size)) or write(attribute, size))
        elif isinstance(size, int) and not isinstance(size, bool):
            append(write(attribute, size))
    for field_name, attribute in _ADDRESSES:
        address = fields.get(field_name)
        # int() is 0 for 0.0.0.0 and ::, a config's ``ip("0.0.0.0")`` for an unknown peer: left out
        if isinstance(address, _IP_TYPES) and int(address):
            append(write(attribute, _address_text(address)))
    if protocol := fields.get("api_protocol"):
        parts.append(write("network.protocol.name", str(protocol)))
    source, destination = _named(fields.get("source_name")), _named(fields.get("destination_name"))
    if peer := (destination if client else source):
        append(known(("peer.service", peer)) or write("peer.service", peer))
    status_code, status_message = _status(tags, code, client)
    encoded = wire.span(
        trace_id, span_id, parent_id, fields.get("span_name") or "unknown", kind,
        _nanos(fields.get("start_time")), _nanos(fields.get("end_time")), b"".join(parts), status_code, status_message,
    )
    service = _named(tags.get("service.name")) or (source if client else destination) or "unknown"
    return service, encoded


def _spread_encoded(wire: Mapping[str, bytes], tags: Mapping[str, Any]) -> bytes:
    """A spread map's entries as they arrived (empty ones are not in ``wire``), less the keys a tag
    of its own has: the same attributes the entry by entry spread writes, without encoding them."""
    # Most spans share no key with a tag: found by one set operation in C, not a test per entry.
    own = {key for key in wire.keys() & tags.keys() if tags[key] not in _NO_TAG}
    if not own:
        return b"".join(wire.values())
    return b"".join([field for key, field in wire.items() if key not in own])


_NO_TAG = (None, "")  # a tag with this value leaves its key to the spread map


def _status(tags: Mapping[str, Any], code: int, client: bool) -> tuple[int, str]:
    stated = tags.get("otel.status_code")
    stated = stated.upper() if isinstance(stated, str) else ""
    if stated in _STATUS:
        description = tags.get("otel.status_description") if stated == "ERROR" else ""
        return _STATUS[stated], str(description or "")
    if code >= 500 or (client and code >= 400):
        return trace_pb2.Status.STATUS_CODE_ERROR, ""
    return trace_pb2.Status.STATUS_CODE_UNSET, ""


def traces_request(spans: Iterable[tuple[str, bytes]]) -> bytes:
    """One ExportTraceServiceRequest: a ResourceSpans per service, in first-seen order."""
    by_service: dict[str, list[bytes]] = {}
    for service, span in spans:
        by_service.setdefault(service, []).append(span)
    return wire.traces_request(by_service.items(), SCOPE_NAME)


def logentry_to_record(
    name: str, fields: Mapping[str, Any], observed_nanos: int
) -> tuple[tuple[tuple[str, str], ...], logs_pb2.LogRecord]:
    """One logentry instance as (resource attributes, OTLP log record): its variables become the
    record's attributes, its monitored resource dimensions the resource's attributes, the body is
    the instance's name."""
    record = logs_pb2.LogRecord(
        time_unix_nano=_nanos(fields.get("timestamp")) or observed_nanos,
        observed_time_unix_nano=observed_nanos,
        body=common_pb2.AnyValue(string_value=name.split(".", 1)[0]),
    )
    severity = fields.get("severity")
    if isinstance(severity, str) and severity:
        record.severity_text = severity
        record.severity_number = _SEVERITY.get(severity.upper(), 0)  # type: ignore[assignment]
    variables: Mapping[str, Any] = fields.get("variables") or {}
    record.attributes.extend(_key_value(k, v) for k, v in variables.items() if v is not None)
    dimensions: Mapping[str, Any] = fields.get("monitored_resource_dimensions") or {}
    resource = tuple(sorted((str(k), str(v)) for k, v in dimensions.items()))
    return resource, record


def logs_request(records: Iterable[tuple[tuple[tuple[str, str], ...], logs_pb2.LogRecord]]) -> bytes:
    """One ExportLogsServiceRequest: a ResourceLogs per distinct resource, in first-seen order."""
    by_resource: dict[tuple[tuple[str, str], ...], list[logs_pb2.LogRecord]] = {}
    for resource, record in records:
        by_resource.setdefault(resource, []).append(record)
    request = logs_service_pb2.ExportLogsServiceRequest()
    for resource, group in by_resource.items():
        resource_logs = request.resource_logs.add()
        attributes = dict(resource)
        attributes.setdefault("service.name", SCOPE_NAME)
        resource_logs.resource.attributes.extend(_key_value(k, v) for k, v in attributes.items())
        scope_logs = resource_logs.scope_logs.add()
        scope_logs.scope.name = SCOPE_NAME
        scope_logs.log_records.extend(group)
    return bytes(request.SerializeToString())
