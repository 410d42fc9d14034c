"""The prometheus handler's params: Mixer's shape (snake_case or camelCase), validated in full."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mixer.params import BUCKET_KINDS, Fields, parse_buckets
from mixer.sdk import ParamsError

DEFAULT_NAMESPACE = "istio"  # Mixer prefixed every metric with "istio_" unless told otherwise
# Loopback: the metrics name workloads and principals. `mixer serve --metrics-address 0.0.0.0:42422`
# (or the handler's `address` param) exposes them.
DEFAULT_ADDRESS = "127.0.0.1:42422"
DEFAULT_MAX_SERIES = 10_000
# prometheus client's default histogram buckets, which Mixer used when none were given
DEFAULT_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OVERFLOW_LABEL = "__overflow__"

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SAFE = str.maketrans({"/": "_", ".": "_", " ": "_", "-": None})


class Kind(enum.Enum):
    COUNTER = "COUNTER"
    GAUGE = "GAUGE"
    DISTRIBUTION = "DISTRIBUTION"


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """One exposed metric family, fed by one instance."""

    name: str  # exposed family name, namespace included: "istio_requests_total"
    instance_name: str  # fully qualified: "requestcount.instance.istio-system"
    kind: Kind
    label_names: tuple[str, ...]  # instance dimension names, in exposition order
    bounds: tuple[float, ...] = ()  # DISTRIBUTION only: finite upper bounds, increasing
    description: str = ""
    max_series: int = DEFAULT_MAX_SERIES


@dataclass(frozen=True, slots=True)
class Params:
    metrics: tuple[MetricInfo, ...]
    host: str = "127.0.0.1"  # DEFAULT_ADDRESS
    port: int = 42422
    expiry: float | None = None  # seconds without data before a series is dropped; None keeps all
    expiry_check_interval: float | None = None


def safe_name(name: str) -> str:
    """Mixer's name cleaning: "/" "." " " become "_", "-" goes."""
    return name.removeprefix("/").translate(_SAFE)


def qualify_instance(name: str) -> str:
    """Accept Mixer's older "name.metric.namespace" spelling for "name.instance.namespace"."""
    parts = name.split(".")
    if len(parts) == 3 and parts[1] == "metric":
        return f"{parts[0]}.instance.{parts[2]}"
    return name


def parse(raw: Mapping[str, Any] | None, default_address: str = DEFAULT_ADDRESS) -> Params:
    """Validate handler params; raise ParamsError naming every problem.

    ``default_address`` is where /metrics listens when the params name no ``address``.
    """
    problems: list[tuple[str, str]] = []
    top = Fields(
        raw or {}, "", ["metrics", "metrics_expiration_policy", "address", "max_series_per_metric"], problems
    )
    host, port = _address(top, default_address)
    default_max = top.number("max_series_per_metric", DEFAULT_MAX_SERIES, integer=True)
    if default_max is not None and default_max < 1:
        top.problem("max_series_per_metric", "must be >= 1")
    expiry, interval = _expiration(top)

    metrics: list[MetricInfo] = []
    raw_metrics = top.get("metrics", [])
    if not isinstance(raw_metrics, list):
        top.problem("metrics", "must be a list")
        raw_metrics = []
    seen_names: dict[str, int] = {}
    seen_instances: dict[str, int] = {}
    for i, item in enumerate(raw_metrics):
        info = _metric(Fields(item, f"metrics[{i}]", _METRIC_FIELDS, problems), int(default_max or 1))
        if info is None:
            continue
        if info.name in seen_names:
            problems.append((f"metrics[{i}].name", f"{info.name!r} already defined by metrics[{seen_names[info.name]}]"))
        if info.instance_name in seen_instances:
            problems.append((
                f"metrics[{i}].instance_name",
                f"{info.instance_name!r} already feeds metrics[{seen_instances[info.instance_name]}]",
            ))
        seen_names.setdefault(info.name, i)
        seen_instances.setdefault(info.instance_name, i)
        metrics.append(info)
    if problems:
        raise ParamsError(problems)
    return Params(tuple(metrics), host, port, expiry, interval)


_METRIC_FIELDS = ["name", "instance_name", "kind", "label_names", "buckets", "namespace", "description", "max_series"]


def _address(top: Fields, default: str) -> tuple[str, int]:
    address = top.string("address", default)
    parsed = split_address(address)
    if parsed is None:
        top.problem("address", f"must be host:port with port 0-65535, got {address!r}")
        fallback = split_address(DEFAULT_ADDRESS)
        assert fallback is not None
        return fallback
    return parsed


def split_address(address: str) -> tuple[str, int] | None:
    """``"host:port"`` (``"[::1]:42422"`` for IPv6) as (host, port); None when it is not one."""
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        return None
    return host, int(port_text)


def _expiration(top: Fields) -> tuple[float | None, float | None]:
    raw = top.get("metrics_expiration_policy")
    if raw is None:
        return None, None
    policy = top.child("metrics_expiration_policy", ["metrics_expiry_duration", "expiry_check_interval_duration"])
    expiry = policy.duration("metrics_expiry_duration")
    if expiry is None and "metrics_expiry_duration" not in policy.values and isinstance(raw, Mapping):
        policy.problem("metrics_expiry_duration", "required when metricsExpirationPolicy is set")
    interval = policy.duration("expiry_check_interval_duration")
    if expiry is not None and interval is None:
        interval = expiry / 2  # Mixer's default: check twice per expiry period
    return expiry, interval


def _metric(fields: Fields, default_max: int) -> MetricInfo | None:
    before = len(fields.problems)
    instance = fields.string("instance_name")
    if not instance:
        fields.problem("instance_name", "required (the fully qualified instance, e.g. requestcount.instance.istio-system)")
    name = safe_name(fields.string("name") or instance)
    namespace = safe_name(fields.string("namespace") or DEFAULT_NAMESPACE)
    full = f"{namespace}_{name}" if name else ""
    if name and not _METRIC_NAME.match(full):
        fields.problem("name", f"{full!r} is not a valid Prometheus metric name")

    kind_text = fields.string("kind")
    kind = Kind.__members__.get(kind_text.upper()) if kind_text else None
    if kind is None:
        fields.problem("kind", f"must be one of COUNTER, GAUGE, DISTRIBUTION, got {kind_text or 'nothing'!r}")

    labels = _labels(fields, kind)
    bounds: tuple[float, ...] = ()
    if "buckets" in fields.values:
        if kind is not Kind.DISTRIBUTION:
            fields.problem("buckets", "only a DISTRIBUTION has buckets")
        else:
            buckets = parse_buckets(fields.child("buckets", BUCKET_KINDS))
            bounds = buckets.bounds if buckets else ()
    elif kind is Kind.DISTRIBUTION:
        bounds = DEFAULT_BOUNDS

    max_series = fields.number("max_series", default_max, integer=True)
    if max_series is not None and max_series < 1:
        fields.problem("max_series", "must be >= 1")
    if len(fields.problems) > before or kind is None:
        return None
    return MetricInfo(
        name=full,
        instance_name=qualify_instance(instance),
        kind=kind,
        label_names=labels,
        bounds=bounds,
        description=fields.string("description"),
        max_series=int(max_series or default_max),
    )


def _labels(fields: Fields, kind: Kind | None) -> tuple[str, ...]:
    raw = fields.get("label_names", [])
    if not isinstance(raw, list):
        fields.problem("label_names", "must be a list of dimension names")
        return ()
    out: list[str] = []
    for j, label in enumerate(raw):
        at = f"label_names[{j}]"
        if not isinstance(label, str) or not _LABEL_NAME.match(safe_name(label)):
            fields.problem(at, f"{label!r} is not a valid Prometheus label name")
        elif safe_name(label).startswith("__"):
            fields.problem(at, f"{label!r}: names starting with __ are reserved by Prometheus")
        elif kind is Kind.DISTRIBUTION and safe_name(label) == "le":
            fields.problem(at, "'le' is reserved for histogram buckets")
        elif label in out:
            fields.problem(at, f"{label!r} listed twice")
        else:
            out.append(label)
    return tuple(out)
