"""The protobuf encoding of spans and trace export requests, written directly as bytes.

Spans are the adapter's volume: building opentelemetry-proto message objects for them made the
whole OTLP path about twice as slow as encoding the same fields straight to bytes, and an export
request is then the concatenation of its spans (a repeated field is its elements, one after
another). Log records, far fewer, are built with the generated classes (``convert.py``). Field numbers
are opentelemetry-proto's (``opentelemetry/proto/trace/v1/trace.proto``, ``common/v1``,
``resource/v1``, ``collector/trace/v1``); tests parse what this writes with the generated classes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

_FIXED64 = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")
_CACHE_LIMIT = 8192  # encoded (key, value) attributes kept; identity tags and Envoy's constants repeat


def varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return bytes((value,))
    out = bytearray()
    value &= 0xFFFFFFFFFFFFFFFF  # negative int64 as its two's complement
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: ``tag`` is (number << 3) | 2."""
    length = len(payload)
    return bytes((tag, length)) + payload if length < 0x80 else bytes((tag,)) + varint(length) + payload


def _repeated(tag: int, payloads: Iterable[bytes]) -> bytes:
    """Length-delimited fields of one ``tag``, one per payload, concatenated: ``_field`` inlined,
    as an export request frames every span this way."""
    out: list[bytes] = []
    append = out.append
    for payload in payloads:
        length = len(payload)
        if length < 0x80:
            append(bytes((tag, length)))
        elif length < 0x4000:  # a span: two length bytes
            append(bytes((tag, (length & 0x7F) | 0x80, length >> 7)))
        else:
            append(bytes((tag,)) + varint(length))
        append(payload)
    return b"".join(out)


def _string(tag: int, text: str) -> bytes:
    return _field(tag, text.encode())


def any_value(value: Any) -> bytes:
    """An AnyValue: string 1, bool 2, int 3, double 4, kvlist 6, bytes 7."""
    if isinstance(value, str):
        return _string(0x0A, value)
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _field(0x3A, value)
    if isinstance(value, Mapping):
        return _field(0x32, b"".join(_field(0x0A, key_value(str(k), v)) for k, v in value.items()))
    return _string(0x0A, str(value))


def key_value(key: str, value: Any) -> bytes:
    """A KeyValue's body: key 1, value 2."""
    return _string(0x0A, key) + _field(0x12, any_value(value))


class AttributeWriter:
    """Encodes attributes as one repeated field (``tag``), caching the string and integer ones that repeat."""

    def __init__(self, tag: int) -> None:
        self._tag = tag
        self._cache: dict[tuple[str, str | int], bytes] = {}
        # ``known((key, value))``: the cached encoding or None, without a Python call; hot loops try
        # it before ``write``. Only for str and int values (see ``write``).
        self.known = self._cache.get

    def write(self, key: str, value: Any) -> bytes:
        # str and int only: a bool equals 1 or 0 as a dict key but encodes otherwise
        if type(value) is str or type(value) is int:
            pair = (key, value)
            encoded = self._cache.get(pair)
            if encoded is None:
                encoded = _short_string_attribute(self._tag, key, value) if type(value) is str else None
                if encoded is None:
                    encoded = _field(self._tag, key_value(key, value))
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()  # bounded: a burst of unique values costs a refill, not memory
                self._cache[pair] = encoded
            return encoded
        return _field(self._tag, key_value(key, value))


def _short_string_attribute(tag: int, key: str, value: str) -> bytes | None:
    """``_field(tag, key_value(key, value))`` in one step for the common case, a string attribute
    whose every length fits one byte (``None`` otherwise): a value new on every span (a request id)
    is encoded here each time, and the general way is five calls."""
    key_bytes, value_bytes = key.encode(), value.encode()
    any_size = 2 + len(value_bytes)  # AnyValue: string_value (1)
    size = 4 + len(key_bytes) + any_size  # KeyValue: key (1), value (2)
    if size >= 0x80:
        return None
    return (bytes((tag, size, 0x0A, len(key_bytes))) + key_bytes
            + bytes((0x12, any_size, 0x0A, len(value_bytes))) + value_bytes)


def span(
    trace_id: bytes, span_id: bytes, parent_id: bytes, name: str, kind: int, start_ns: int, end_ns: int,
    attributes: bytes, status_code: int, status_message: str,
) -> bytes:
    """A Span: trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6, start 7, end 8,
    attributes 9 (already encoded), status 15 (message 2, code 3)."""
    out = b"\x0a\x10" + trace_id + b"\x12\x08" + span_id
    if parent_id:
        out += b"\x22\x08" + parent_id
    out += _string(0x2A, name) + b"\x30" + varint(kind)
    out += b"\x39" + _FIXED64.pack(start_ns) + b"\x41" + _FIXED64.pack(end_ns) + attributes
    if status_code or status_message:
        status = (_string(0x12, status_message) if status_message else b"") + (
            b"\x18" + varint(status_code) if status_code else b"")
        out += _field(0x7A, status)
    return out


def traces_request(groups: Iterable[tuple[str, Iterable[bytes]]], scope: str) -> bytes:
    """An ExportTraceServiceRequest from (service name, encoded spans): one ResourceSpans (field 1)
    per group, its Resource (1) carrying service.name, one ScopeSpans (2) with the scope's name."""
    scope_field = _field(0x0A, _string(0x0A, scope))
    out = []
    for service, spans in groups:
        resource = _field(0x0A, _field(0x0A, key_value("service.name", service)))
        scope_spans = _field(0x12, scope_field + _repeated(0x12, spans))
        out.append(_field(0x0A, resource + scope_spans))
    return b"".join(out)
