"""What the metric adapters (prometheus, stackdriver) share about series: how an instance's dimension
tuple becomes a series key, and how a dimension value becomes label text."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from mixer.attributes import format_duration, format_timestamp


def series_keying(
    label_names: Sequence[str], dimension_names: Sequence[str]
) -> tuple[Callable[[tuple[Any, ...]], tuple[Any, ...]] | None, tuple[int, ...] | None]:
    """How dimensions become a series key, and how a key becomes labels in ``label_names`` order.

    When the labels are exactly the dimensions (in any order) the dimensions tuple itself is the key
    and reordering waits for the scrape or push: the hot path builds no tuple. Otherwise the key is the
    projection onto the labels, already in label order.
    """
    dims = list(dimension_names)
    if sorted(label_names) == sorted(dims):
        order = tuple(dims.index(name) for name in label_names)
        return None, (None if order == tuple(range(len(dims))) else order)
    index = [dims.index(name) for name in label_names]
    if not index:
        return (lambda _dims: ()), None
    if len(index) == 1:
        only = index[0]
        return (lambda d: (d[only],)), None
    return itemgetter(*index), None


def label_text(value: Any) -> str:
    """A dimension value as label text, spelled as Mixer's adapters did."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)  # 200.0 reads as 200, as in Go
    if isinstance(value, dt.timedelta):
        return format_duration(value)
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return "&".join(f"{k}={v}" for k, v in sorted(value.items()))
    if value is None:
        return ""
    return str(value)
