"""The check cache: a check's combined verdict, reused for later bags that agree on everything the
decision could have read, for as long and as many times as the verdict allows.

Mixer's proxies cached answers under the attributes each decision referenced. Here the key set is
static, a sound superset: every attribute (or map entry) that any check rule's ``match`` or any of
its check instances' expressions reads. Handlers see only instances, so two bags equal on those
build the same instances and get the same answers. Quota allocations are never cached.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from typing import Any

from mixer.expr import Reference
from mixer.sdk import CheckResult
from mixer.selfmetrics import SelfMetrics

DEFAULT_CACHE_SIZE = 10_000

_ABSENT = object()  # an attribute (or map key) the bag does not have: absence is part of the key
Key = tuple[Any, ...]
# What ``lookup`` answers: the bag's key (None: not cacheable), then on a hit the cached verdict and
# the seconds and uses it has left (a miss: None, 0.0, 0).
Lookup = tuple[Key | None, CheckResult | None, float, int]


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return frozenset(value.items())
    if isinstance(value, list):
        return tuple(value)
    return value


def _attributes_reader(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Key]:
    """The values of ``names`` in a bag that has them all, as a tuple; KeyError when one is absent.
    For two names or more one C call, an itemgetter (about half the cost of ``key``'s general
    read); an itemgetter of one name would answer the value itself, not a tuple."""
    if len(names) > 1:
        return itemgetter(*names)
    if names:
        (name,) = names
        return lambda bag: (bag[name],)
    return lambda bag: ()


def _entry_reader(name: str, key: str) -> Callable[[Mapping[str, Any]], Any]:
    def entry(bag: Mapping[str, Any]) -> Any:
        found = bag.get(name)
        return found.get(key, _ABSENT) if isinstance(found, Mapping) else _ABSENT

    return entry


# A hit's verdict with what it has left is built only when a front door reads that validity (the
# native API reports it, Envoy's ext_authz answers do not): ``remaining_verdict`` is called then, by
# ``CachedCheckResponse.result``. It sets the new verdict's slots (CheckResult's own member
# descriptors) rather than calling CheckResult(...): a frozen dataclass's __init__ sets each field
# through object.__setattr__ and costs more than the rest of a hit. The field list is checked here
# so that a field added to CheckResult cannot go uncopied.
_FIELDS = ("status_code", "message", "valid_duration", "valid_use_count", "http_status", "headers", "body")
if tuple(f.name for f in dataclasses.fields(CheckResult)) != _FIELDS:
    raise ImportError(f"CheckResult's fields changed: update {__name__}.remaining_verdict")
_set_status, _set_message, _set_duration, _set_uses, _set_http_status, _set_headers, _set_body = (
    getattr(CheckResult, name).__set__ for name in _FIELDS
)
_new = object.__new__
_timedelta = dt.timedelta


def remaining_verdict(cached: CheckResult, seconds: float, uses: int) -> CheckResult:
    """``cached`` valid for another ``seconds`` and ``uses`` uses."""
    result: CheckResult = _new(CheckResult)
    _set_status(result, cached.status_code)
    _set_message(result, cached.message)
    _set_duration(result, _timedelta(0, seconds))
    _set_uses(result, uses)
    _set_http_status(result, cached.http_status)
    _set_headers(result, cached.headers)
    _set_body(result, cached.body)
    return result


class _Entry:
    __slots__ = ("result", "expires", "uses_left")

    def __init__(self, result: CheckResult, expires: float, uses_left: int) -> None:
        self.result = result
        self.expires = expires
        self.uses_left = uses_left


class CheckCache:
    """LRU of at most ``capacity`` verdicts; hits, misses and evictions counted in ``metrics``."""

    def __init__(
        self,
        references: Iterable[Reference],
        capacity: int,
        metrics: SelfMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.references = tuple(sorted(references, key=repr))
        # Whole attributes are read, in general (``key``), with one C-level map over bag.get (an absent
        # one reads None, which no bag holds as a value); when the bag has them all, as it mostly
        # does, ``lookup`` reads them with ``_read_names``, the same key for less. Map entries each
        # need their own reader.
        self._names = tuple(r for r in self.references if isinstance(r, str))
        self._read_names = _attributes_reader(self._names)
        self._entries_read = tuple(_entry_reader(*r) for r in self.references if not isinstance(r, str))
        self.capacity = capacity
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._clock = clock
        self._hit_series = metrics.check_cache.labels("hit")
        self._miss_series = metrics.check_cache.labels("miss")
        # The two series' numbers for the thread that owns this cache, taken on its first lookup and
        # added to in place: a hit is cheap enough that a counter call per hit was a tenth of it.
        # Only one thread ever looks up (the runtime's check loop; the LRU's moves are not
        # thread-safe either), so no other thread adds to these lists.
        self._cells: tuple[list[float], list[float]] | None = None
        self._evictions = metrics.check_cache_evictions

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, bag: Mapping[str, Any]) -> Key | None:
        """The bag's key, or None when a value cannot be a key (never for well-formed bags)."""
        key = tuple(map(bag.get, self._names))
        if self._entries_read:
            key += tuple(read(bag) for read in self._entries_read)
        try:
            hash(key)
        except TypeError:  # a whole map (or list) attribute: compare its contents
            key = tuple(_freeze(value) for value in key)
            try:
                hash(key)
            except TypeError:
                return None
        return key

    def lookup(self, bag: Mapping[str, Any]) -> Lookup:
        """The bag's key and, on a hit, the cached verdict with the seconds and uses it has left
        (``remaining_verdict`` makes them one verdict), counting this use. A hit is a check's whole
        work, so the common key (every value hashable) is built here and hashed once, by the lookup
        itself; ``key`` does the rest."""
        hits, misses = self._cells or self._take_cells()
        entries = self._entries
        try:
            key: Key = self._read_names(bag)
            if self._entries_read:
                key += tuple(read(bag) for read in self._entries_read)
            entry = entries.get(key)
        except (KeyError, TypeError):  # an attribute the bag lacks, or a whole map (or list) attribute
            general = self.key(bag)
            if general is None:
                return None, None, 0.0, 0
            key = general
            entry = entries.get(key)
        if entry is None:
            misses[0] += 1
            return key, None, 0.0, 0
        left = entry.expires - self._clock()
        if left <= 0:
            del entries[key]
            misses[0] += 1
            return key, None, 0.0, 0
        uses = entry.uses_left
        if uses <= 1:
            del entries[key]
        else:
            entries.move_to_end(key)
        entry.uses_left = uses - 1
        hits[0] += 1
        return key, entry.result, left, uses

    def _take_cells(self) -> tuple[list[float], list[float]]:
        self._cells = (self._hit_series.thread_cells(), self._miss_series.thread_cells())
        return self._cells

    def put(self, key: Key, result: CheckResult) -> None:
        """Keep ``result`` for its valid duration and use count (this answer is its first use)."""
        seconds = result.valid_duration.total_seconds()
        if seconds <= 0 or result.valid_use_count <= 1:
            return
        self._entries[key] = _Entry(result, self._clock() + seconds, result.valid_use_count - 1)
        self._entries.move_to_end(key)
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self._evictions.inc()
