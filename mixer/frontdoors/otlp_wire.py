"""The OTLP trace export request as the front door decodes it: opentelemetry-proto's messages, except
that a span's attributes stay the bytes they arrived as (``repeated bytes``, one KeyValue each).

Reading 24 attributes out of upb's KeyValue/AnyValue objects cost about as much as everything else
the door does for a span, and the otlp adapter then encoded them again. As bytes, an attribute that
repeats from span to span (a sidecar's node id, its identity tags, Envoy's constants: most of them)
is one cached lookup, and its encoding goes on to the adapter as it came (``EncodedAttributes``).
The fields are opentelemetry-proto's numbers and types (``trace.proto``), so the wire format is the
same; fields the door does not read (events, links, flags) stay unparsed.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from mixer.attributes import BagError
from mixer.sdk import EncodedAttributes

_PACKAGE = "mixer.otlp_wire"
_F = descriptor_pb2.FieldDescriptorProto
_SPAN_FIELDS = (  # opentelemetry/proto/trace/v1/trace.proto, message Span
    ("trace_id", 1, _F.TYPE_BYTES, _F.LABEL_OPTIONAL, None),
    ("span_id", 2, _F.TYPE_BYTES, _F.LABEL_OPTIONAL, None),
    ("parent_span_id", 4, _F.TYPE_BYTES, _F.LABEL_OPTIONAL, None),
    ("name", 5, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
    ("kind", 6, _F.TYPE_INT32, _F.LABEL_OPTIONAL, None),  # the SpanKind enum's wire form
    ("start_time_unix_nano", 7, _F.TYPE_FIXED64, _F.LABEL_OPTIONAL, None),
    ("end_time_unix_nano", 8, _F.TYPE_FIXED64, _F.LABEL_OPTIONAL, None),
    ("attributes", 9, _F.TYPE_BYTES, _F.LABEL_REPEATED, None),  # KeyValue, undecoded
    ("status", 15, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".opentelemetry.proto.trace.v1.Status"),
)
_MESSAGES = (
    ("Span", _SPAN_FIELDS),
    ("ScopeSpans", (("spans", 2, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, f".{_PACKAGE}.Span"),)),
    ("ResourceSpans", (
        ("resource", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".opentelemetry.proto.resource.v1.Resource"),
        ("scope_spans", 2, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, f".{_PACKAGE}.ScopeSpans"),
    )),
    ("ExportTraceServiceRequest", (
        ("resource_spans", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, f".{_PACKAGE}.ResourceSpans"),
    )),
)


def _message_classes() -> dict[str, Any]:
    # A pool of its own, seeded with the generated files it refers to: nothing is added to the
    # default pool, so the generated classes' names stay theirs alone.
    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2, trace_pb2):
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="mixer/otlp_wire.proto", package=_PACKAGE, syntax="proto3",
        dependency=["opentelemetry/proto/resource/v1/resource.proto", "opentelemetry/proto/trace/v1/trace.proto"],
    )
    for name, fields in _MESSAGES:
        message = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            message.field.add(name=field_name, number=number, type=kind, label=label, type_name=type_name)
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
            for name, _ in _MESSAGES}


_CLASSES = _message_classes()
ExportTraceServiceRequest: Any = _CLASSES["ExportTraceServiceRequest"]
Span: Any = _CLASSES["Span"]

_ATTRIBUTE_TAG = 0x4A  # Span.attributes: field 9, length-delimited


def as_wire_span(span: Any) -> Any:
    """A span in this module's form; a generated ``trace_pb2.Span`` is re-read from its encoding."""
    return span if isinstance(span, Span) else Span.FromString(span.SerializeToString())


Attribute = tuple[str, str, bytes | None]
_CACHE_LIMIT = 8192
_read: dict[bytes, Attribute] = {}  # a memo of ``attribute``: most attributes repeat on every span


def span_attributes(encoded: Sequence[bytes]) -> EncodedAttributes:
    """A span's attributes (``Span.attributes`` as this module decodes it) as a STRING_MAP that
    keeps each non-empty entry's encoding. A repeated key: the last one counts, as in a map."""
    entries = EncodedAttributes()
    wire: dict[str, bytes] = {}
    get = _read.get
    for one in encoded:
        known = get(one)
        if known is None:
            known = _learn(one)
        key, entries[key], field = known
        if field is not None:
            wire[key] = field
        elif key in wire:
            del wire[key]
    if len(entries) != len(encoded):  # a repeated key: the map's order is where the key came first
        wire = {key: wire[key] for key in entries if key in wire}
    entries.wire = wire
    return entries


def _learn(encoded: bytes) -> Attribute:
    known = attribute(encoded)
    if len(_read) >= _CACHE_LIMIT:
        _read.clear()  # bounded: a burst of unique values costs refills, not memory
    _read[encoded] = known
    return known


def attribute(encoded: bytes) -> Attribute:
    """One KeyValue's encoding -> (key, value as text, its ``Span.attributes`` field, or None when
    the text is empty: an empty attribute is not sent on)."""
    key, text, is_string = _short_string(encoded) or _any_key_value(encoded)
    if not text:
        return key, text, None
    if not is_string:  # sent on as its text, as a STRING_MAP entry is
        encoded = common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=text)).SerializeToString()
    length = len(encoded)
    field = bytes((_ATTRIBUTE_TAG, length)) if length < 0x80 else bytes((_ATTRIBUTE_TAG,)) + _varint(length)
    return key, text, field + encoded


def _short_string(encoded: bytes) -> tuple[str, str, bool] | None:
    """The common case read by hand: key (1) and a string AnyValue (2 -> 1), every length < 128."""
    size = len(encoded)
    if size < 6 or encoded[0] != 0x0A or encoded[1] >= 0x80:
        return None
    key_end = 2 + encoded[1]
    value_size = size - key_end - 2
    if (not 2 <= value_size < 0x80 or encoded[key_end] != 0x12 or encoded[key_end + 1] != value_size
            or encoded[key_end + 2] != 0x0A or encoded[key_end + 3] != value_size - 2):
        return None
    try:
        return encoded[2:key_end].decode(), encoded[key_end + 4:].decode(), True
    except UnicodeDecodeError:
        return None  # the generic reader names the problem


def _any_key_value(encoded: bytes) -> tuple[str, str, bool]:
    try:
        kv = common_pb2.KeyValue.FromString(encoded)
    except DecodeError as exc:  # the span alone is refused
        raise BagError("span.attributes", f"malformed attribute: {exc}") from None
    value = kv.value
    which = value.WhichOneof("value")
    if which in ("string_value", None):
        return str(kv.key), str(value.string_value), True
    return str(kv.key), any_value_text(value), False


def any_value_text(value: Any) -> str:
    """An OTLP AnyValue as text: strings as they are, numbers and booleans as JSON writes them,
    bytes as base64, arrays and key-value lists as JSON."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return str(value.string_value)
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "int_value":
        return str(value.int_value)
    if which == "double_value":
        return repr(value.double_value)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return orjson.dumps(_any_value_json(value)).decode()


def _any_value_json(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_any_value_json(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _any_value_json(kv.value) for kv in value.kvlist_value.values}
    if which is None:
        return None
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    return base64.b64encode(value.bytes_value).decode("ascii")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
