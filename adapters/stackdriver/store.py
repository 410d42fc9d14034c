"""Per-metric aggregation between pushes: the hot path is a dict lookup and an add; protobufs are
built only when a push collects the series fed since the previous one.

A series is keyed by its dimension values as the instance carried them (and its monitored resource
values when the instance has any). Cumulative series keep their start time and running totals for
the handler's life; delta series and gauge distributions start afresh after each collected point.
Distributions keep bucket counts, count and shifted sums, so mean and sum of squared deviation
stay exact enough whatever the magnitude of the values.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any

from google.api import distribution_pb2, label_pb2, metric_pb2
from google.cloud.monitoring_v3.types import metric as metric_types

from adapters.stackdriver.config import Kind, MetricInfo, ValueType
from mixer.params import Buckets
from mixer.series import label_text, series_keying

__all__ = ["GLOBAL", "RESOURCE_LABELS", "MetricStore", "Resource", "Series", "descriptor_for", "to_number"]

TimeSeriesPb: Any = metric_types.TimeSeries.pb()
GLOBAL = "global"
_MILLISECOND = dt.timedelta(milliseconds=1)

# Labels Cloud Monitoring requires of the resource types Istio wrote to (and a few more).
RESOURCE_LABELS: dict[str, tuple[str, ...]] = {
    "global": ("project_id",),
    "k8s_container": ("project_id", "location", "cluster_name", "namespace_name", "pod_name", "container_name"),
    "k8s_pod": ("project_id", "location", "cluster_name", "namespace_name", "pod_name"),
    "k8s_node": ("project_id", "location", "cluster_name", "node_name"),
    "gce_instance": ("project_id", "instance_id", "zone"),
    "generic_node": ("project_id", "location", "namespace", "node_id"),
    "generic_task": ("project_id", "location", "namespace", "job", "task_id"),
}


class Resource:
    """How an instance's monitored resource values become a MonitoredResource's type and labels."""

    def __init__(self, type_name: str, dimension_names: Sequence[str], project_id: str, fill: dict[str, str]) -> None:
        # Mixer wrote instances without a resource type to the "global" resource of the project.
        self.global_ = type_name in ("", "UNSPECIFIED", GLOBAL)
        self.type = GLOBAL if self.global_ else type_name
        self.names = tuple(dimension_names)
        self.project_id = project_id
        # for labels the instance leaves empty, or omits when the resource type requires them
        self.fill = {"project_id": project_id, **fill}
        self.required = RESOURCE_LABELS.get(self.type, ())

    def labels(self, values: Sequence[Any]) -> dict[str, str]:
        if self.global_:
            return {"project_id": self.project_id}
        out = {name: label_text(value) for name, value in zip(self.names, values)}
        for name, default in self.fill.items():
            if default and not out.get(name) and (name in out or name in self.required):
                out[name] = default
        return out


class Series:
    """One label set's aggregate since its start (cumulative) or the last push (delta, gauge)."""

    __slots__ = (
        "key", "value", "counts", "count", "shift", "total", "squares", "start", "reported", "dirty", "pushed", "proto",
    )

    def __init__(self, key: Any, buckets: int, start: float) -> None:
        self.key = key
        self.value: float = 0
        self.counts: list[int] = [0] * buckets
        self.count = 0
        # The first value (since a reset): sums are kept relative to it, so that mean and squared
        # deviation keep their precision whatever the values' magnitude.
        self.shift: float | None = None
        self.total = 0.0
        self.squares = 0.0
        self.start = start
        self.reported: float = -1  # value or count at the last push: a series is pushed when it moved
        self.dirty = False  # gauges: fed since the last push
        self.pushed = start  # when it last had a point to push (expiry)
        self.proto: Any = None  # the TimeSeries without its point, built at the first push


Add = Callable[[Any, tuple[Any, ...], tuple[Any, ...]], None]


class MetricStore:
    """The series of one metric instance, and counts of what it could not take."""

    def __init__(
        self,
        info: MetricInfo,
        metric_type: str,
        label_names: Sequence[str],
        dimension_names: Sequence[str],
        resource: Resource,
        max_series: int,
        clock: Callable[[], float],
        expiry: float = float("inf"),
    ) -> None:
        self.info = info
        self.metric_type = metric_type
        self.label_names = tuple(label_names)
        self.resource = resource
        self.max_series = max_series
        self.series: dict[Any, Series] = {}
        self.rejected = 0  # instances whose value was not a usable number
        self.over_limit = 0  # instances for new series past max_series
        self.expiry = expiry
        self._clock = clock
        self._with_resource = bool(resource.names) and not resource.global_
        self._bounds = info.buckets.bounds if info.buckets else ()
        self._buckets = len(self._bounds) + 1 if info.value_type is ValueType.DISTRIBUTION else 0
        self._integer = info.value_type is ValueType.INT64
        self._project, self._order = series_keying(self.label_names, dimension_names)
        self._bucket_options = _bucket_options(info.buckets) if info.buckets else None
        self.add: Add = self._feeder()

    def definition(self) -> tuple[Any, ...]:
        """What must be equal for another handler's store to take this one's series over."""
        r = self.resource
        return (self.info, self.metric_type, self.label_names, self._project, self._order,
                r.type, r.names, r.project_id, tuple(sorted(r.fill.items())), self.max_series, self.expiry)

    def _feeder(self) -> Add:
        """The hot path, as a closure over locals (cheaper than attribute lookups per instance).

        The three variants repeat the lookup inline: a shared helper costs a call per instance.
        """
        store, get, new, hashable = self, self.series.get, self._new, self._hashable
        project, with_resource, bounds = self._project, self._with_resource, self._bounds
        integer = self._integer
        number_type: type = int if integer else float
        timedelta, millisecond = dt.timedelta, _MILLISECOND

        def observe(value: Any, dimensions: tuple[Any, ...], resource: tuple[Any, ...]) -> None:
            if type(value) is timedelta:  # latencies: the common distribution, in milliseconds
                value = value / millisecond
            elif type(value) is not float and type(value) is not int:
                value = to_number(value, False)
                if value is None:
                    store.rejected += 1
                    return
            if value - value:  # NaN or infinite
                store.rejected += 1
                return
            key = dimensions if project is None else project(dimensions)
            if with_resource:
                key = (key, resource)
            try:
                series = get(key)
            except TypeError:
                key, series = hashable(key)
            if series is None:
                series = new(key)
                if series is None:
                    return
            series.counts[bisect_right(bounds, value)] += 1  # bucket i: bounds[i-1] <= x < bounds[i]
            try:
                offset = value - series.shift
            except TypeError:  # the first value since the series began or was reset: the new shift
                series.shift = value
                offset = 0.0
            series.count += 1
            series.total += offset
            series.squares += offset * offset

        def accumulate(value: Any, dimensions: tuple[Any, ...], resource: tuple[Any, ...]) -> None:
            if type(value) is not number_type:
                value = to_number(value, integer)
                if value is None:
                    store.rejected += 1
                    return
            if value < 0 or value - value:  # running totals only grow; NaN and infinity never count
                store.rejected += 1
                return
            key = dimensions if project is None else project(dimensions)
            if with_resource:
                key = (key, resource)
            try:
                series = get(key)
            except TypeError:
                key, series = hashable(key)
            if series is None:
                series = new(key)
                if series is None:
                    return
            series.value += value

        def set_gauge(value: Any, dimensions: tuple[Any, ...], resource: tuple[Any, ...]) -> None:
            if type(value) is not number_type:
                value = to_number(value, integer)
                if value is None:
                    store.rejected += 1
                    return
            if value - value:
                store.rejected += 1
                return
            key = dimensions if project is None else project(dimensions)
            if with_resource:
                key = (key, resource)
            try:
                series = get(key)
            except TypeError:
                key, series = hashable(key)
            if series is None:
                series = new(key)
                if series is None:
                    return
            series.value = value
            series.dirty = True

        if self._buckets:
            return observe
        return set_gauge if self.info.kind is Kind.GAUGE else accumulate

    def _hashable(self, key: Any) -> tuple[Any, Series | None]:
        """An unhashable value (a map) in the key: key on the values' text instead."""
        if self._with_resource:
            key = (tuple(label_text(v) for v in key[0]), tuple(label_text(v) for v in key[1]))
        else:
            key = tuple(label_text(v) for v in key)
        return key, self.series.get(key)

    def _new(self, key: Any) -> Series | None:
        if len(self.series) >= self.max_series:
            self.over_limit += 1  # memory stays bounded whatever the label values do
            return None
        series = self.series[key] = Series(key, self._buckets, self._clock())
        return series

    # -- push time -----------------------------------------------------------------------------

    def moved(self) -> int:
        """How many series the next collect would push."""
        if self._buckets:
            return sum(1 for series in self.series.values() if series.count != series.reported)
        if self.info.kind is Kind.GAUGE:
            return sum(1 for series in self.series.values() if series.dirty)
        return sum(1 for series in self.series.values() if series.value != series.reported)

    def collect(self, now: float, out: list[Any]) -> None:
        """Append one TimeSeries (one point) per series fed since the last collect.

        Each series owns its TimeSeries and rewrites its point at every collect (building the labels
        and resource once): collect again only after the previous ones were sent, as the handler's
        flush does (it waits for the queue to be empty).
        """
        kind = self.info.kind
        distribution = self._buckets > 0
        integer = self._integer
        gauge, delta = kind is Kind.GAUGE, kind is Kind.DELTA
        now_us = round(now * 1e6)  # Cloud Monitoring keeps microseconds
        silent_since = now - self.expiry
        silent: list[Any] = []
        for series in self.series.values():
            if distribution:
                moved = series.count != series.reported
            elif gauge:
                moved, series.dirty = series.dirty, False
            else:
                moved = series.value != series.reported
            if not moved:
                if series.pushed < silent_since:
                    silent.append(series.key)
                continue
            series.pushed = now
            ts = series.proto
            if ts is None:
                ts = series.proto = self._static(series.key)
            point = ts.points[0]
            start_us = round(series.start * 1e6)
            end_us = now_us if now_us > start_us else start_us + 1  # a non-gauge interval is never empty
            stamp = point.interval.end_time
            stamp.seconds, rest = divmod(end_us, 1_000_000)
            stamp.nanos = rest * 1000
            if not gauge:
                stamp = point.interval.start_time
                stamp.seconds, rest = divmod(start_us, 1_000_000)
                stamp.nanos = rest * 1000
            if distribution:
                dv = point.value.distribution_value
                count = dv.count = series.count
                mean_offset = series.total / count
                dv.mean = (series.shift or 0.0) + mean_offset
                dv.sum_of_squared_deviation = max(series.squares - series.total * mean_offset, 0.0)
                dv.bucket_counts[:] = series.counts
                if kind is Kind.CUMULATIVE:
                    series.reported = count
                else:  # the next point covers only what comes after this one
                    series.counts = [0] * self._buckets
                    series.count, series.total, series.squares, series.reported = 0, 0.0, 0.0, 0
                    series.shift = None
            elif integer:
                point.value.int64_value = int(series.value)
                series.reported = series.value
            else:
                point.value.double_value = float(series.value)
                series.reported = series.value
            if delta:
                series.value = series.reported = 0
                series.start = end_us / 1e6  # the next interval begins where this one ended
            out.append(ts)
        for key in silent:  # room for new series; one that comes back starts afresh (a reset)
            del self.series[key]

    def _static(self, key: Any) -> Any:
        """The series' TimeSeries: metric type and labels, resource, kind, value type, and a point to fill."""
        dims, resource_values = (key if self._with_resource else (key, ()))
        values = dims if self._order is None else [dims[i] for i in self._order]
        ts = TimeSeriesPb()
        ts.metric.type = self.metric_type
        labels = ts.metric.labels
        for name, value in zip(self.label_names, values):
            labels[name] = label_text(value)
        ts.resource.type = self.resource.type
        ts.resource.labels.update(self.resource.labels(resource_values))
        ts.metric_kind = int(self.info.kind)
        ts.value_type = int(self.info.value_type)
        point = ts.points.add()
        if self._bucket_options is not None:
            point.value.distribution_value.bucket_options.CopyFrom(self._bucket_options)
        return ts


def descriptor_for(store: MetricStore, project_id: str) -> Any:
    """The MetricDescriptor to create for ``store``'s metric type when the service lacks it."""
    info = store.info
    return metric_pb2.MetricDescriptor(
        name=f"projects/{project_id}/metricDescriptors/{store.metric_type}",
        type=store.metric_type,
        metric_kind=int(info.kind),
        value_type=int(info.value_type),
        unit=info.unit,
        description=info.description or f"Mixer metric instance {info.instance_name}",
        display_name=store.metric_type.rsplit("/", 1)[-1],
        labels=[label_pb2.LabelDescriptor(key=name, value_type=label_pb2.LabelDescriptor.STRING)
                for name in store.label_names],
    )


def _bucket_options(buckets: Buckets) -> Any:
    options = distribution_pb2.Distribution.BucketOptions()
    if buckets.kind == "linear":
        options.linear_buckets.num_finite_buckets = buckets.num_finite_buckets
        options.linear_buckets.width = buckets.width
        options.linear_buckets.offset = buckets.offset
    elif buckets.kind == "exponential":
        options.exponential_buckets.num_finite_buckets = buckets.num_finite_buckets
        options.exponential_buckets.growth_factor = buckets.growth_factor
        options.exponential_buckets.scale = buckets.scale
    else:
        options.explicit_buckets.bounds.extend(buckets.bounds)
    return options


def to_number(value: Any, integer: bool) -> Any:
    """A metric value as the metric's number type: durations in milliseconds (Istio's latency unit
    in Cloud Monitoring), numeric strings parsed; None when it is no number."""
    if isinstance(value, dt.timedelta):
        millis = value / _MILLISECOND
        return round(millis) if integer else millis
    if isinstance(value, bool):
        return int(value) if integer else float(value)
    if isinstance(value, (int, float)):
        if integer:
            return round(value) if value == value and value not in (float("inf"), float("-inf")) else None
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return to_number(number, integer)
    return None
