"""The stackdriver handler's params: Mixer's shape (snake_case or camelCase), validated in full."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.prometheus.config import qualify_instance
from mixer.params import BUCKET_KINDS, Buckets, Fields, parse_buckets
from mixer.push import DeliverySettings, parse_delivery
from mixer.sdk import ParamsError

CUSTOM_PREFIX = "custom.googleapis.com/"  # Mixer's prefix for metrics without a metric_type
DEFAULT_PUSH_INTERVAL = 60.0  # Mixer's default: once a minute
MIN_PUSH_INTERVAL = 10.0  # Cloud Monitoring takes a point per series at most every 5-10 s
MAX_SERIES_PER_REQUEST = 200  # CreateTimeSeries limit
MAX_LABELS = 30  # labels per metric descriptor
DEFAULT_MAX_SERIES = 10_000
DEFAULT_SERIES_EXPIRY = 600.0  # a series silent this long is forgotten (pods come and go)

_METRIC_TYPE = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)+$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
_ENDPOINT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):([0-9]{1,5})$")


class Kind(enum.IntEnum):
    """google.api.MetricDescriptor.MetricKind (Mixer's configs often give the number)."""

    GAUGE = 1
    DELTA = 2
    CUMULATIVE = 3


class ValueType(enum.IntEnum):
    """The google.api.MetricDescriptor.ValueType values a metric instance can feed."""

    INT64 = 2
    DOUBLE = 3
    DISTRIBUTION = 5


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """How one metric instance becomes a Cloud Monitoring metric."""

    instance_name: str  # fully qualified: "requestcount.instance.istio-system"
    metric_type: str
    kind: Kind
    value_type: ValueType
    buckets: Buckets | None = None
    unit: str = ""
    description: str = ""
    label_names: tuple[str, ...] | None = None  # None: every dimension of the instance


@dataclass(frozen=True, slots=True)
class Params:
    project_id: str
    metrics: tuple[MetricInfo, ...]
    push_interval: float = DEFAULT_PUSH_INTERVAL
    endpoint: str = ""  # "" : the library's default (monitoring.googleapis.com)
    insecure: bool = False  # plaintext channel, no credentials (loopback fakes, private proxies)
    service_account_path: str = ""  # "" : Application Default Credentials
    location: str = ""  # fills an empty "location" resource label
    cluster_name: str = ""  # fills an empty "cluster_name" resource label
    max_series: int = DEFAULT_MAX_SERIES  # per metric
    series_expiry: float = DEFAULT_SERIES_EXPIRY
    delivery: DeliverySettings = dataclasses.field(default_factory=DeliverySettings)


_TOP = [
    "project_id", "endpoint", "insecure", "push_interval", "app_credentials", "service_account_path", "api_key",
    "location", "cluster_name", "max_series_per_metric", "series_expiry", "metric_info", "delivery",
]
_METRIC = ["kind", "value", "metric_type", "buckets", "unit", "description", "label_names"]


def parse(raw: Mapping[str, Any] | None) -> Params:
    """Validate handler params; raise ParamsError naming every problem."""
    problems: list[tuple[str, str]] = []
    raw = raw or {}
    top = Fields(raw, "", _TOP, problems, camel_paths=True)
    project = top.string("project_id")
    if not project:
        top.problem("project_id", "required: the Google Cloud project the metrics are written to")
    elif "/" in project or not re.fullmatch(r"[a-z0-9][a-z0-9\-]*[a-z0-9]|[0-9]+", project):
        top.problem("project_id", f"{project!r} is not a project id")
    endpoint = top.string("endpoint")
    if endpoint and not _ENDPOINT.match(endpoint):
        top.problem("endpoint", f"must be host:port, got {endpoint!r}")
    insecure = top.boolean("insecure")
    if insecure and not endpoint:
        top.problem("insecure", "needs an endpoint (plaintext is for a loopback fake or a private proxy)")
    push_interval = top.duration("push_interval") or DEFAULT_PUSH_INTERVAL
    if push_interval < MIN_PUSH_INTERVAL:
        top.problem("push_interval", f"must be at least {MIN_PUSH_INTERVAL:g}s (Cloud Monitoring's write rate per series)")
    account = _credentials(top, insecure)
    max_series = top.number("max_series_per_metric", DEFAULT_MAX_SERIES, integer=True)
    if max_series is not None and max_series < 1:
        top.problem("max_series_per_metric", "must be >= 1")
    series_expiry = top.duration("series_expiry") or DEFAULT_SERIES_EXPIRY
    if series_expiry < push_interval:
        top.problem("series_expiry", f"must not be shorter than pushInterval ({push_interval:g}s)")

    metrics: list[MetricInfo] = []
    infos = top.get("metric_info", {})
    if not isinstance(infos, Mapping):
        top.problem("metric_info", "must be a mapping of instance name to metric info")
        infos = {}
    seen_types: dict[str, str] = {}
    for name, item in infos.items():
        fields = Fields(item, f"{top.at('metric_info')}[{name}]", _METRIC, problems, camel_paths=True)
        info = _metric(qualify_instance(str(name)), fields)
        if info is None:
            continue
        if info.metric_type in seen_types:
            fields.problem("metric_type", f"{info.metric_type!r} already fed by {seen_types[info.metric_type]}")
        seen_types.setdefault(info.metric_type, str(name))
        metrics.append(info)

    delivery, delivery_problems = parse_delivery(top.get("delivery"), top.at("delivery"))
    problems += delivery_problems
    delivery = _stackdriver_delivery(delivery, top.get("delivery"), top.at("delivery"), problems)
    if problems:
        raise ParamsError(problems)
    return Params(
        project_id=project, metrics=tuple(metrics), push_interval=push_interval, endpoint=endpoint,
        insecure=insecure, service_account_path=account, location=top.string("location"),
        cluster_name=top.string("cluster_name"), max_series=int(max_series or DEFAULT_MAX_SERIES),
        series_expiry=series_expiry,
        delivery=delivery,
    )


def _credentials(top: Fields, insecure: bool) -> str:
    """Mixer's oneof: appCredentials or serviceAccountPath (neither: application default credentials)."""
    if "api_key" in top.values:
        top.problem("api_key", "API keys are not supported for writing metrics; use serviceAccountPath or appCredentials")
    app = top.boolean("app_credentials")
    path = top.string("service_account_path")
    if app and path:
        top.problem("service_account_path", "give either appCredentials or serviceAccountPath, not both")
    if insecure and (app or path):
        top.problem("insecure", "credentials cannot be sent over a plaintext channel")
    if path:
        _check_service_account(top, path)
    return path


def _check_service_account(top: Fields, path: str) -> None:
    try:
        info = json.loads(Path(path).read_text())
    except OSError as exc:
        top.problem("service_account_path", f"cannot read {path}: {exc.strerror or exc}")
        return
    except ValueError:
        top.problem("service_account_path", f"{path} is not JSON")
        return
    missing = [k for k in ("type", "client_email", "private_key", "token_uri") if not isinstance(info, dict) or k not in info]
    if missing or info.get("type") != "service_account":
        top.problem("service_account_path", f"{path} is not a service account key file (missing {', '.join(missing) or 'type service_account'})")


def _enum(fields: Fields, key: str, enum_type: type[Kind] | type[ValueType]) -> Any:
    value = fields.get(key)
    names = ", ".join(f"{m.name} ({m.value})" for m in enum_type)
    if isinstance(value, str) and value.upper() in enum_type.__members__:
        return enum_type[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool) and value in {m.value for m in enum_type}:
        return enum_type(value)  # Mixer's charts gave enums as numbers (a gogoproto bug)
    fields.problem(key, f"must be one of {names}, got {'nothing' if value is None else repr(value)}")
    return None


def _metric(instance: str, fields: Fields) -> MetricInfo | None:
    before = len(fields.problems)
    if "." not in instance:
        fields.problems.append((fields.path, "the key must be a fully qualified instance name such as requestcount.instance.istio-system"))
    kind = _enum(fields, "kind", Kind)
    value_type = _enum(fields, "value", ValueType)
    metric_type = fields.string("metric_type") or CUSTOM_PREFIX + instance
    if not _METRIC_TYPE.match(metric_type):
        fields.problem("metric_type", f"{metric_type!r} is not a metric type like custom.googleapis.com/name")
    buckets: Buckets | None = None
    if "buckets" in fields.values:
        if value_type is not ValueType.DISTRIBUTION:
            fields.problem("buckets", "only a DISTRIBUTION has buckets")
        else:
            buckets = parse_buckets(fields.child("buckets", BUCKET_KINDS))
    elif value_type is ValueType.DISTRIBUTION:
        fields.problem("buckets", "required for a DISTRIBUTION (linearBuckets, exponentialBuckets or explicitBuckets)")
    labels = _labels(fields)
    if len(fields.problems) > before or kind is None or value_type is None:
        return None
    return MetricInfo(
        instance_name=instance, metric_type=metric_type, kind=kind, value_type=value_type, buckets=buckets,
        unit=fields.string("unit"), description=fields.string("description"), label_names=labels,
    )


def _labels(fields: Fields) -> tuple[str, ...] | None:
    if "label_names" not in fields.values:
        return None
    raw = fields.get("label_names")
    if not isinstance(raw, list):
        fields.problem("label_names", "must be a list of dimension names")
        return None
    out: list[str] = []
    for j, label in enumerate(raw):
        at = f"label_names[{j}]"
        if not isinstance(label, str) or not LABEL_KEY.match(label):
            fields.problem(at, f"{label!r} is not a Cloud Monitoring label key ([a-z][a-z0-9_]*)")
        elif label in out:
            fields.problem(at, f"{label!r} listed twice")
        else:
            out.append(label)
    if len(out) > MAX_LABELS:
        fields.problem("label_names", f"at most {MAX_LABELS} labels per metric, got {len(out)}")
    return tuple(out)


def _stackdriver_delivery(
    settings: DeliverySettings, raw: Any, path: str, problems: list[tuple[str, str]]
) -> DeliverySettings:
    """Cloud Monitoring's defaults where the block is silent: one request of at most 200 series per
    batch, sent at once (the flush already gathered them), and one sender, so that the points of a
    series reach the service in time order."""
    given = raw if isinstance(raw, Mapping) else {}
    changes: dict[str, Any] = {}
    if "batchSize" not in given:
        changes["batch_size"] = min(MAX_SERIES_PER_REQUEST, settings.queue_size)
    elif settings.batch_size > MAX_SERIES_PER_REQUEST:
        problems.append((f"{path}.batchSize", f"at most {MAX_SERIES_PER_REQUEST} (series per CreateTimeSeries request)"))
    if "batchTimeout" not in given:
        changes["batch_timeout"] = 0.0
    if "senders" not in given:
        changes["senders"] = 1
    return dataclasses.replace(settings, **changes)
