"""Attribute types, the manifest that names them, and conversions from JSON and text to Python values.

A bag is a plain ``dict`` from attribute name to Python value; an absent attribute is a missing key.
Python representations: STRING/EMAIL_ADDRESS/DNS_NAME/URI -> str, INT64 -> int, DOUBLE -> float,
BOOL -> bool, TIMESTAMP -> aware ``datetime`` (UTC), DURATION -> ``timedelta``,
IP_ADDRESS -> ``ipaddress.IPv4Address | IPv6Address``, STRING_MAP -> ``dict[str, str]``, BYTES -> bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import functools
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

Bag = dict[str, Any]


class ValueType(enum.Enum):
    STRING = "STRING"
    INT64 = "INT64"
    DOUBLE = "DOUBLE"
    BOOL = "BOOL"
    TIMESTAMP = "TIMESTAMP"
    DURATION = "DURATION"
    IP_ADDRESS = "IP_ADDRESS"
    EMAIL_ADDRESS = "EMAIL_ADDRESS"
    DNS_NAME = "DNS_NAME"
    URI = "URI"
    STRING_MAP = "STRING_MAP"
    BYTES = "BYTES"
    # Template fields typed VALUE_TYPE_UNSPECIFIED in Mixer accept any type (e.g. metric values).
    ANY = "ANY"


STRING_LIKE = frozenset(
    {ValueType.STRING, ValueType.EMAIL_ADDRESS, ValueType.DNS_NAME, ValueType.URI}
)

AttributeManifest = dict[str, ValueType]

_S, _I, _D, _B = ValueType.STRING, ValueType.INT64, ValueType.DOUBLE, ValueType.BOOL
_T, _DUR, _IP, _MAP = ValueType.TIMESTAMP, ValueType.DURATION, ValueType.IP_ADDRESS, ValueType.STRING_MAP

# Istio's proxy vocabulary (istio-proxy and kubernetes attribute manifests of Istio 1.4).
_ISTIO_VOCABULARY: dict[str, ValueType] = {}
for _side in ("source", "destination"):
    _ISTIO_VOCABULARY.update(
        {
            f"{_side}.uid": _S,
            f"{_side}.ip": _IP,
            f"{_side}.port": _I,
            f"{_side}.labels": _MAP,
            f"{_side}.metadata": _MAP,
            f"{_side}.name": _S,
            f"{_side}.namespace": _S,
            f"{_side}.principal": _S,
            f"{_side}.owner": _S,
            f"{_side}.user": _S,
            f"{_side}.workload.uid": _S,
            f"{_side}.workload.name": _S,
            f"{_side}.workload.namespace": _S,
            f"{_side}.cluster.id": _S,
        }
    )
_ISTIO_VOCABULARY.update(
    {
        "source.services": _S,
        "destination.container.name": _S,
        "destination.container.image": _S,
        "destination.service.host": _S,
        "destination.service.uid": _S,
        "destination.service.name": _S,
        "destination.service.namespace": _S,
        "origin.ip": _IP,
        "origin.uid": _S,
        "origin.user": _S,
        "request.headers": _MAP,
        "request.id": _S,
        "request.path": _S,
        "request.url_path": _S,
        "request.query_params": _MAP,
        "request.host": _S,
        "request.method": _S,
        "request.reason": _S,
        "request.referer": _S,
        "request.scheme": _S,
        "request.size": _I,
        "request.total_size": _I,
        "request.time": _T,
        "request.useragent": _S,
        "request.api_key": _S,
        "request.auth.principal": _S,
        "request.auth.audiences": _S,
        "request.auth.presenter": _S,
        "request.auth.claims": _MAP,
        "request.auth.raw_claims": _S,
        "response.headers": _MAP,
        "response.size": _I,
        "response.total_size": _I,
        "response.time": _T,
        "response.duration": _DUR,
        "response.code": _I,
        "response.grpc_status": _S,
        "response.grpc_message": _S,
        "response.flags": _S,
        "connection.id": _S,
        "connection.event": _S,
        "connection.received.bytes": _I,
        "connection.received.bytes_total": _I,
        "connection.sent.bytes": _I,
        "connection.sent.bytes_total": _I,
        "connection.duration": _DUR,
        "connection.mtls": _B,
        "connection.requested_server_name": _S,
        "context.protocol": _S,
        "context.proxy_error_code": _S,
        "context.timestamp": _T,
        "context.time": _T,
        "context.reporter.kind": _S,
        "context.reporter.uid": _S,
        "context.proxy_version": _S,
        "api.service": _S,
        "api.version": _S,
        "api.operation": _S,
        "api.protocol": _S,
        "check.error_code": _I,
        "check.error_message": _S,
        "check.cache_hit": _B,
        "quota.cache_hit": _B,
        "rbac.permissive.response_code": _S,
        "rbac.permissive.effective_policy_id": _S,
    }
)

# One span of a distributed trace: what the OTLP front door reads from each span, and what the
# access log service derives for a request when its proxy does not trace (docs/envoy-attributes.md).
# Ids are lowercase hex (32 digits for a trace, 16 for a span), as W3C traceparent writes them.
_SPAN_VOCABULARY: dict[str, ValueType] = {
    "span.trace_id": _S,
    "span.id": _S,
    "span.parent_id": _S,  # absent on a root span
    "span.name": _S,
    "span.kind": _S,  # "client", "server", "internal", "producer", "consumer" (OTLP's, lowercase)
    "span.start_time": _T,
    "span.end_time": _T,
    "span.status_code": _S,  # "UNSET", "OK", "ERROR" (OTLP's)
    "span.status_message": _S,
    "span.attributes": _MAP,  # every span attribute, as text
    "span.service": _S,  # the resource's service.name
    "span.resource": _MAP,  # every resource attribute, as text
    "context.proxy_tracing": _B,  # the reporting proxy exports spans of its own (set by the sidecar generator)
}


def default_manifest() -> AttributeManifest:
    """A fresh copy of Istio's proxy vocabulary plus the span vocabulary; config
    ``attributemanifest`` documents extend it."""
    return {**_ISTIO_VOCABULARY, **_SPAN_VOCABULARY}


class BagError(ValueError):
    """An attribute value that does not fit its declared type; names the attribute."""

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(f"attribute {attribute!r}: {message}")
        self.attribute = attribute


# -- durations -------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> dt.timedelta:
    """Parse a Go-style duration ("1.5s", "250ms", "1h2m", "-3s"); ValueError for anything else,
    blank text and durations beyond ``timedelta``'s range (about 2.7 million years) included."""
    body = text.strip()
    sign = 1
    if body and body[0] in "+-":
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    if body == "0":
        return dt.timedelta(0)
    pos, seconds = 0, 0.0
    while pos < len(body):
        part = _DURATION_PART.match(body, pos)
        if part is None:
            raise ValueError(f"invalid duration {text!r}")
        seconds += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        pos = part.end()
    # Go's time.Duration is an int64 of nanoseconds: about 292 years either way.
    if not seconds <= _MAX_DURATION_SECONDS:
        raise ValueError(f"duration {text!r} is out of range (at most about 292 years)")
    return dt.timedelta(seconds=sign * seconds)


def duration_from_seconds(seconds: float, nanos: int = 0) -> dt.timedelta:
    """``seconds`` (+ ``nanos``) as a timedelta (a JSON number, a protobuf Duration); ValueError,
    not OverflowError, beyond Go's range, as ``parse_duration``."""
    total = seconds + nanos / 1e9
    if not abs(total) <= _MAX_DURATION_SECONDS:  # NaN fails too
        raise ValueError(f"duration of {seconds}s is out of range (at most about 292 years)")
    return dt.timedelta(0, seconds, nanos // 1000)  # (days, seconds, µs): positional is cheaper


_MAX_DURATION_SECONDS = (2**63 - 1) / 1e9


@functools.lru_cache(maxsize=1024)  # answers repeat the same few durations (valid_duration, windows)
def format_duration(value: dt.timedelta) -> str:
    """Format like Go's time.Duration.String(): "1.5s", "250ms", "1m30s", "0s"."""
    # The number ends each string, so stripping trailing zeros (then the point) trims it alone. A
    # quota's time to its window's reset differs every check: most native answers format one here.
    micros = value // _MICROSECOND
    if micros <= 0:
        return "0s" if micros == 0 else "-" + format_duration(-value)
    if micros < 1000:
        return f"{micros}µs"
    if micros < 1_000_000:
        return f"{micros / 1000:.6f}".rstrip("0").rstrip(".") + "ms"
    if micros < 60_000_000:
        return f"{micros / 1_000_000:.6f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(micros, 60_000_000)
    if minutes < 60:
        return f"{minutes}m{rest / 1_000_000:.6f}".rstrip("0").rstrip(".") + "s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{rest / 1_000_000:.6f}".rstrip("0").rstrip(".") + "s"


_MICROSECOND = dt.timedelta(microseconds=1)


# -- timestamps ------------------------------------------------------------------------------


def parse_timestamp(text: str) -> dt.datetime:
    """Parse RFC 3339 ("2026-11-26T06:22:34.779880Z"); nanosecond fractions are truncated.

    ValueError for anything else, times that leave years 1..9999 once moved to UTC included."""
    body = text.strip()
    if not _RFC3339.match(body):
        raise ValueError(f"invalid timestamp {text!r} (expected RFC 3339, e.g. 2026-11-26T06:22:34Z)")
    if body.endswith(("Z", "z")):
        body = body[:-1] + "+00:00"
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", body, re.IGNORECASE)
    if match and match.group(2) and len(match.group(2)) > 7:
        body = match.group(1) + match.group(2)[:7] + match.group(3)
    try:
        value = dt.datetime.fromisoformat(body)
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)
    except OverflowError:
        raise ValueError(f"timestamp {text!r} is out of range") from None


# A date and a time are both required ("2020-01-01" alone is not a timestamp); a missing offset is UTC.
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)?$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def timestamp_from_seconds(seconds: int, nanos: int = 0) -> dt.datetime:
    """Seconds since the Unix epoch (+ ``nanos``; a protobuf Timestamp) as an aware datetime;
    ValueError when out of years 1..9999."""
    try:
        return _EPOCH + dt.timedelta(0, seconds, nanos // 1000)  # (days, seconds, µs): positional is cheaper
    except OverflowError:
        raise ValueError(f"timestamp of {seconds}s since the epoch is out of range") from None


def format_timestamp(value: dt.datetime) -> str:
    text = value.astimezone(dt.timezone.utc).isoformat()
    return text.replace("+00:00", "Z")


# -- text -> values --------------------------------------------------------------------------


def value_from_text(name: str, kind: ValueType, text: str) -> Any:
    """Convert an attribute's text form to the Python value of ``kind``; raise BagError naming ``name``.

    The text forms: INT64/DOUBLE as numerals, BOOL as ``true``/``false`` (any case), Go durations,
    RFC 3339 timestamps, IP addresses, STRING_MAP as a JSON object of strings, BYTES as base64.
    Envoy's context extensions, custom tags and descriptor values arrive like this; the JSON path
    uses the same parsers for the values JSON carries as strings.
    """
    try:
        return _FROM_TEXT[kind](text)
    except (TypeError, ValueError, OverflowError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise BagError(name, f"expected {kind.value}, got {text!r} ({exc})") from None


def _same_text(text: str) -> str:
    return text


def _int64_in_range(value: int) -> int:
    if not -(2**63) <= value < 2**63:
        raise ValueError("out of INT64 range")
    return value


def _int64_from_text(text: str) -> int:
    return _int64_in_range(int(text))


def _bool_from_text(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError("not true or false")
    return lowered == "true"


def _string_map_from_text(text: str) -> dict[str, str]:
    raw = orjson.loads(text)
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ValueError("not a JSON object of strings")
    return raw


def _bytes_from_text(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


_FROM_TEXT: dict[ValueType, Callable[[str], Any]] = {
    ValueType.STRING: _same_text,
    ValueType.EMAIL_ADDRESS: _same_text,
    ValueType.DNS_NAME: _same_text,
    ValueType.URI: _same_text,
    ValueType.ANY: _same_text,
    ValueType.INT64: _int64_from_text,
    ValueType.DOUBLE: float,
    ValueType.BOOL: _bool_from_text,
    ValueType.TIMESTAMP: parse_timestamp,
    ValueType.DURATION: parse_duration,
    ValueType.IP_ADDRESS: ipaddress.ip_address,
    ValueType.STRING_MAP: _string_map_from_text,
    ValueType.BYTES: _bytes_from_text,
}


# -- JSON <-> values -------------------------------------------------------------------------


def value_from_json(name: str, kind: ValueType, raw: Any) -> Any:
    """Convert one JSON value to the Python value of ``kind``; raise BagError naming ``name``."""
    try:
        return _FROM_JSON[kind](raw)
    except BagError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: float(10**400)
        raise BagError(name, f"expected {kind.value}, got {_describe(raw)} ({exc})") from None


def bag_from_json(raw: Any, manifest: Mapping[str, ValueType]) -> Bag:
    """Turn a JSON object into a typed bag; unknown attributes and type mismatches raise BagError."""
    if not isinstance(raw, dict):
        raise BagError("<bag>", f"expected a JSON object of attributes, got {_describe(raw)}")
    bag: Bag = {}
    string = ValueType.STRING
    for name, value in raw.items():
        kind = manifest.get(name)
        if kind is string and value.__class__ is str:  # most attributes: no conversion, no enum hash
            bag[name] = value
        elif kind is None:
            raise BagError(name, "not in the attribute manifest")
        else:
            bag[name] = value_from_json(name, kind, value)
    return bag


def value_to_json(kind: ValueType, value: Any) -> Any:
    """The JSON form of a value: RFC 3339, Go durations, IPs as text, maps as objects."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, dt.timedelta):
        return format_duration(value)
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return dict(value)
    return value


def type_of_value(value: Any) -> ValueType:
    """The ValueType a Python value represents (string-like values report STRING)."""
    for python_type, kind in _PY_TYPES:
        if isinstance(value, python_type):
            return kind
    raise TypeError(f"no attribute type for Python value of type {type(value).__name__}")


_PY_TYPES: tuple[tuple[Any, ValueType], ...] = (
    (bool, ValueType.BOOL),
    (int, ValueType.INT64),
    (float, ValueType.DOUBLE),
    (str, ValueType.STRING),
    (dt.datetime, ValueType.TIMESTAMP),
    (dt.timedelta, ValueType.DURATION),
    ((ipaddress.IPv4Address, ipaddress.IPv6Address), ValueType.IP_ADDRESS),
    (Mapping, ValueType.STRING_MAP),
    (bytes, ValueType.BYTES),
)


def _describe(raw: Any) -> str:
    if raw is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(raw), type(raw).__name__)


def _string(raw: Any) -> str:
    if not isinstance(raw, str):
        raise TypeError("not a string")
    return raw


def _int64(raw: Any) -> int:
    if isinstance(raw, bool):
        raise TypeError("not an integer")
    if isinstance(raw, str) and re.fullmatch(r"-?\d+", raw):  # proto3 JSON writes int64 as text
        return _int64_from_text(raw)
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if not isinstance(raw, int):
        raise TypeError("not an integer")
    return _int64_in_range(raw)


def _double(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise TypeError("not a number")
    return float(raw)


def _bool(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise TypeError("not a boolean")
    return raw


def _duration(raw: Any) -> dt.timedelta:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return duration_from_seconds(raw)
    return parse_duration(_string(raw))


def _string_map(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise TypeError("not an object of strings")
    return dict(raw)


def _as_text(kind: ValueType) -> Callable[[Any], Any]:
    """A JSON string holding ``kind``'s text form (timestamps, IPs, base64 bytes), read as text is."""
    from_text = _FROM_TEXT[kind]

    def convert(raw: Any) -> Any:
        return from_text(_string(raw))

    return convert


_FROM_JSON: dict[ValueType, Callable[[Any], Any]] = {
    ValueType.STRING: _string,
    ValueType.EMAIL_ADDRESS: _string,
    ValueType.DNS_NAME: _string,
    ValueType.URI: _string,
    ValueType.INT64: _int64,
    ValueType.DOUBLE: _double,
    ValueType.BOOL: _bool,
    ValueType.TIMESTAMP: _as_text(ValueType.TIMESTAMP),
    ValueType.DURATION: _duration,
    ValueType.IP_ADDRESS: _as_text(ValueType.IP_ADDRESS),
    ValueType.STRING_MAP: _string_map,
    ValueType.BYTES: _as_text(ValueType.BYTES),
    ValueType.ANY: lambda raw: raw,
}
