"""A prometheus_client Collector over the series stores, for any registry or exposition function."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from adapters.prometheus.config import Kind, MetricInfo
from adapters.prometheus.exposition import (
    Snapshot,
    bucket_bounds,
    documentation,
    exposed_labels,
    families_in,
    family_name,
)
from adapters.prometheus.store import MetricStore


class StoreCollector(Collector):
    """Builds metric families from the stores at each ``collect``; the stores are never touched otherwise."""

    def __init__(self, stores: Callable[[], Sequence[MetricStore]]) -> None:
        self._stores = stores

    def collect(self) -> Iterator[Metric]:
        return metric_families(families_in(self._stores()))


def metric_families(families: Iterable[tuple[MetricInfo, Snapshot]]) -> Iterator[Metric]:
    """Store snapshots (``families_in``) as prometheus_client metric families."""
    for info, snapshot in families:
        labels = list(exposed_labels(info))
        family: CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
        if info.kind is Kind.DISTRIBUTION:
            family = HistogramMetricFamily(family_name(info), documentation(info), labels=labels)
            les = bucket_bounds(info)
            for values, _value, counts, total in snapshot:
                family.add_metric(list(values), buckets=list(zip(les, counts)), sum_value=total)
        else:
            cls = CounterMetricFamily if info.kind is Kind.COUNTER else GaugeMetricFamily
            family = cls(family_name(info), documentation(info), labels=labels)
            for values, value, _counts, _total in snapshot:
                family.add_metric(list(values), value)
        yield family
