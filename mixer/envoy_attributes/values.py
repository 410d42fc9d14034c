"""Protobuf values every Envoy message carries (addresses, times) and typed text entries -> attributes.

Shared by the access log, ext_authz and rate limit mappings; pure, no protobuf imports (messages
are read through their fields).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from collections.abc import Mapping
from typing import Any

from mixer.attributes import (
    Bag,
    BagError,
    ValueType,
    duration_from_seconds,
    timestamp_from_seconds,
    value_from_text,
)

# Peers repeat: parsing an address costs ~3 µs, a cache hit ~0.05 µs. Bounded.
_ip = functools.lru_cache(maxsize=4096)(ipaddress.ip_address)


# Each read of a protobuf field costs about as much as a small Python call: the mappings read each
# field once into a local, and build keys and values with positional arguments.
_SOCKET_KEYS = {side: (f"{side}.ip", f"{side}.port") for side in ("source", "destination")}


def add_socket_address(address: Any, bag: Bag, side: str) -> None:
    """``address`` (envoy.config.core.v3.Address) as ``side.ip``/``side.port``; pipes and unset
    or unparsable addresses are skipped."""
    sock = address.socket_address
    host = sock.address
    if not host:
        return
    try:
        ip = _ip(host)
    except ValueError:
        return
    ip_key, port_key = _SOCKET_KEYS.get(side) or (f"{side}.ip", f"{side}.port")
    bag[ip_key] = ip
    if port := sock.port_value:
        bag[port_key] = port


def time_from_proto(stamp: Any, name: str) -> dt.datetime:
    """A google.protobuf.Timestamp as an aware datetime (faster than ToDatetime); BagError naming
    attribute ``name`` when it is outside years 1..9999 (the wire allows any int64 of seconds)."""
    try:
        return timestamp_from_seconds(stamp.seconds, stamp.nanos)
    except ValueError as exc:
        raise BagError(name, str(exc)) from None


def duration_from_proto(value: Any, name: str) -> dt.timedelta:
    """A google.protobuf.Duration as a timedelta (faster than ToTimedelta); BagError naming
    attribute ``name`` beyond Go's range."""
    try:
        return duration_from_seconds(value.seconds, value.nanos)
    except ValueError as exc:
        raise BagError(name, str(exc)) from None


def time_after(start: dt.datetime, duration: dt.timedelta, name: str) -> dt.datetime:
    """``start + duration`` as attribute ``name``; BagError when it leaves years 1..9999."""
    try:
        return start + duration
    except OverflowError:
        raise BagError(name, f"{start.isoformat()} + {duration} is out of range") from None


def protocol_from_headers(headers: Mapping[str, str]) -> str:
    """``context.protocol`` of an HTTP exchange: gRPC by its content type, else http."""
    return "grpc" if headers.get("content-type", "").startswith("application/grpc") else "http"


def add_typed_entries(pairs: Mapping[str, str], manifest: Mapping[str, ValueType], bag: Bag) -> None:
    """Copy entries whose key is an attribute name into ``bag``, typed by the manifest."""
    for key in pairs:  # keys, then only the wanted values: a protobuf map's items() is slow
        kind = manifest.get(key)
        if kind is not None:
            bag[key] = value_from_text(key, kind, pairs[key])


def quota_names(text: str) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``: a comma-separated list of quota instance names."""
    return [name.strip() for name in text.split(",") if name.strip()]
