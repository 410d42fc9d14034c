"""Reading an adapter's params the way Mixer's configs wrote them: each key in snake_case or camelCase,
every problem collected with its path (for ``ParamsError``) instead of stopping at the first.

Mixer's handlers disagreed on the documented spelling (prometheus's ``instance_name``, stackdriver's
``metricInfo``), so a reader quotes a key as the user wrote it and, for a key that is missing, in its
adapter's documented spelling (``camel_paths``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mixer.attributes import parse_duration

Problems = list[tuple[str, str]]


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


class Fields:
    """One mapping of params, keyed by their snake_case names whatever the spelling used."""

    def __init__(
        self, raw: Any, path: str, known: Sequence[str], problems: Problems, *, camel_paths: bool = False
    ) -> None:
        self.path, self.problems, self.camel_paths = path, problems, camel_paths
        self.values: dict[str, Any] = {}
        self.spelled: dict[str, str] = {}  # canonical -> as written, so errors quote the user's key
        if not isinstance(raw, Mapping):
            problems.append((path, f"must be a mapping, got {type(raw).__name__}"))
            return
        spellings = {camel(k): k for k in known} | {k: k for k in known}
        for key, value in raw.items():
            canonical = spellings.get(str(key))
            written = f"{path}.{key}" if path else str(key)
            if canonical is None:
                problems.append((written, f"unknown field (known: {', '.join(map(self.documented, known))})"))
            elif canonical in self.values:
                problems.append((written, f"given twice (as {self.spelled[canonical]} and {key})"))
            else:
                self.values[canonical] = value
                self.spelled[canonical] = str(key)

    def child(self, key: str, known: Sequence[str]) -> Fields:
        """The reader of the mapping under ``key``, sharing this one's problems and path style."""
        return Fields(self.get(key), self.at(key), known, self.problems, camel_paths=self.camel_paths)

    def documented(self, key: str) -> str:
        """``key`` in its adapter's documented spelling."""
        return camel(key) if self.camel_paths else key

    def spelling(self, key: str) -> str:
        """How ``key`` is named in messages: as written, else in the documented spelling."""
        return self.spelled.get(key) or self.documented(key)

    def at(self, key: str) -> str:
        """The path of ``key`` (which may carry an index: ``label_names[1]``)."""
        head, bracket, rest = key.partition("[")
        key = self.spelling(head) + bracket + rest
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append((self.at(key), message))

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def string(self, key: str, default: str = "") -> str:
        value = self.values.get(key, default)
        if not isinstance(value, str):
            self.problem(key, f"must be a string, got {value!r}")
            return default
        return value

    def boolean(self, key: str) -> bool:
        value = self.values.get(key, False)
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, got {value!r}")
            return False
        return value

    def number(self, key: str, default: float | None = None, integer: bool = False) -> float | None:
        value = self.values.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            self.problem(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
            return None
        if not math.isfinite(value):
            self.problem(key, f"must be finite, got {value!r}")
            return None
        return float(value)

    def duration(self, key: str) -> float | None:
        """Seconds, from a number or Mixer's duration text (``"10m"``); must be positive."""
        value = self.values.get(key)
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str):
            try:
                seconds = parse_duration(value).total_seconds()
            except ValueError:
                self.problem(key, f"invalid duration {value!r} (e.g. \"10m\", \"30s\")")
                return None
        else:
            self.problem(key, f"must be a duration like \"10m\", got {value!r}")
            return None
        if seconds <= 0:
            self.problem(key, f"must be > 0, got {value!r}")
            return None
        return seconds


@dataclass(frozen=True, slots=True)
class Buckets:
    """A distribution's buckets as Mixer's ``BucketsDefinition`` gave them, and their finite bounds.

    ``bounds`` has N+1 entries for N finite buckets (Mixer's numFiniteBuckets); with the underflow
    and overflow buckets that makes len(bounds) + 1 bucket counts, bucket i holding
    bounds[i-1] <= x < bounds[i].
    """

    kind: str  # "linear" | "exponential" | "explicit"
    bounds: tuple[float, ...]
    num_finite_buckets: int = 0
    width: float = 0.0
    offset: float = 0.0
    growth_factor: float = 0.0
    scale: float = 0.0


BUCKET_KINDS = ("linear_buckets", "exponential_buckets", "explicit_buckets")  # the proto's oneof order


def parse_buckets(fields: Fields) -> Buckets | None:
    """A ``buckets`` block (``fields`` reads it, known keys ``BUCKET_KINDS``); None after a problem."""
    given = [k for k in BUCKET_KINDS if k in fields.values]
    if len(given) != 1:
        names = [fields.documented(k) for k in BUCKET_KINDS]
        where = "none" if not given else " and ".join(map(fields.spelling, given))
        fields.problems.append((fields.path, f"exactly one of {', '.join(names)} is required, got {where}"))
        return None
    kind = given[0]
    if kind == "explicit_buckets":
        return _explicit(fields.child(kind, ["bounds"]))
    if kind == "linear_buckets":
        return _linear(fields.child(kind, ["num_finite_buckets", "width", "offset"]))
    return _exponential(fields.child(kind, ["num_finite_buckets", "growth_factor", "scale"]))


def _explicit(spec: Fields) -> Buckets | None:
    raw = spec.get("bounds")
    if not isinstance(raw, list) or not raw:
        spec.problem("bounds", "must be a non-empty list of numbers")
        return None
    if not all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in raw):
        spec.problem("bounds", f"must be finite numbers, got {raw!r}")
        return None
    bounds = tuple(float(b) for b in raw)
    if any(b >= c for b, c in zip(bounds, bounds[1:])):
        spec.problem("bounds", f"must be strictly increasing, got {raw!r}")
        return None
    return Buckets("explicit", bounds)


def _linear(spec: Fields) -> Buckets | None:
    count = spec.number("num_finite_buckets", integer=True)
    width = spec.number("width")
    offset = spec.number("offset", 0.0)
    if count is None or count < 1:
        spec.problem("num_finite_buckets", "required, must be >= 1")
    if width is None or width <= 0:
        spec.problem("width", "required, must be > 0")
    if count is None or count < 1 or width is None or width <= 0 or offset is None:
        return None
    n = int(count)
    return Buckets("linear", tuple(offset + width * i for i in range(n + 1)), n, width=width, offset=offset)


def _exponential(spec: Fields) -> Buckets | None:
    count = spec.number("num_finite_buckets", integer=True)
    growth = spec.number("growth_factor")
    scale = spec.number("scale")
    if count is None or count < 1:
        spec.problem("num_finite_buckets", "required, must be >= 1")
    if growth is None or growth <= 1:
        spec.problem("growth_factor", "required, must be > 1")
    if scale is None or scale <= 0:
        spec.problem("scale", "required, must be > 0")
    if count is None or count < 1 or growth is None or growth <= 1 or scale is None or scale <= 0:
        return None
    n = int(count)
    return Buckets("exponential", tuple(scale * growth**i for i in range(n + 1)), n, growth_factor=growth, scale=scale)
