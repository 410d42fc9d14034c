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

from mixer.attributes import Bag, ValueType, value_from_text

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

# Peers repeat: parsing an address costs ~3 µs, a cache hit ~0.05 µs. Bounded.
_ip = functools.lru_cache(maxsize=4096)(ipaddress.ip_address)


def add_socket_address(address: Any, bag: Bag, side: str) -> None:
    """``address`` (envoy.config.core.v3.Address) as ``side.ip``/``side.port``; pipes and unset
    or unparsable addresses are skipped."""
    sock = address.socket_address
    if not sock.address:
        return
    try:
        bag[f"{side}.ip"] = _ip(sock.address)
    except ValueError:
        return
    if sock.port_value:
        bag[f"{side}.port"] = sock.port_value


def time_from_proto(stamp: Any) -> dt.datetime:
    """A google.protobuf.Timestamp as an aware datetime (faster than ToDatetime)."""
    return _EPOCH + dt.timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


def duration_from_proto(value: Any) -> dt.timedelta:
    """A google.protobuf.Duration as a timedelta (faster than ToTimedelta)."""
    return dt.timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def protocol_from_headers(headers: Mapping[str, str]) -> str:
    """``context.protocol`` of an HTTP exchange: gRPC by its content type, else http."""
    return "grpc" if headers.get("content-type", "").startswith("application/grpc") else "http"


def add_typed_entries(pairs: Mapping[str, str], manifest: Mapping[str, ValueType], bag: Bag) -> None:
    """Copy entries whose key is an attribute name into ``bag``, typed by the manifest."""
    for key, text in pairs.items():
        kind = manifest.get(key)
        if kind is not None:
            bag[key] = value_from_text(key, kind, text)


def quota_names(text: str) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``: a comma-separated list of quota instance names."""
    return [name.strip() for name in text.split(",") if name.strip()]
