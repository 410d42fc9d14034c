"""Aggregation properties: whatever the stream and however pushes cut it, a cumulative distribution's
latest point is the distribution of everything fed, and deltas add up to it."""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.stackdriver.config import parse
from adapters.stackdriver.store import MetricStore, Resource

BOUNDS = [0.5, 1.0, 10.0, 250.0]
values = st.floats(min_value=-1e3, max_value=1e6, allow_nan=False, allow_infinity=False)
streams = st.lists(st.lists(st.tuples(st.sampled_from("abc"), values), max_size=30), min_size=1, max_size=6)


def store(kind: str) -> MetricStore:
    params = parse({"projectId": "test-project", "metricInfo": {"d.instance.ns": {
        "kind": kind, "value": "DISTRIBUTION", "buckets": {"explicitBuckets": {"bounds": BOUNDS}}}}})
    clock = iter(range(1_000, 10_000_000, 10))
    return MetricStore(params.metrics[0], "custom.googleapis.com/d", ("w",), ("w",), Resource("", (), "test-project", {}),
                       100, lambda: float(next(clock)))


def stats(observed: list[float]) -> tuple[int, float, float, list[int]]:
    mean = sum(observed) / len(observed)
    counts = [0] * (len(BOUNDS) + 1)
    for x in observed:
        counts[bisect_right(BOUNDS, x)] += 1
    return len(observed), mean, sum((x - mean) ** 2 for x in observed), counts


def point(ts: Any) -> tuple[int, float, float, list[int]]:
    dv = ts.points[0].value.distribution_value
    return dv.count, dv.mean, dv.sum_of_squared_deviation, list(dv.bucket_counts)


def close(got: tuple[int, float, float, list[int]], want: tuple[int, float, float, list[int]], biggest: float) -> bool:
    """Counts exact; mean and sum of squared deviation within rounding of the largest value fed."""
    count, mean, ssd, buckets = want
    return (got[0], got[3]) == (count, buckets) and abs(got[1] - mean) <= 1e-9 * max(1.0, biggest) and \
        abs(got[2] - ssd) <= 1e-9 * max(1.0, count * biggest * biggest)


@settings(max_examples=200, deadline=None)
@given(streams)
def test_cumulative_point_is_the_distribution_of_everything_fed(pushes: list[list[tuple[str, float]]]) -> None:
    s = store("CUMULATIVE")
    fed: dict[str, list[float]] = {}
    latest: dict[str, Any] = {}
    now = 1e9
    for batch in pushes:
        for label, value in batch:
            s.add(value, (label,), ())
            fed.setdefault(label, []).append(value)
        out: list[Any] = []
        now += 10
        s.collect(now, out)
        assert len(out) == len({label for label, _ in batch})  # only what moved
        for ts in out:
            latest[ts.metric.labels["w"]] = point(ts)
    for label, observed in fed.items():
        assert close(latest[label], stats(observed), max(map(abs, observed))), (label, latest[label], stats(observed))


@settings(max_examples=200, deadline=None)
@given(streams)
@example([[("a", 881375.3903232751)], [("a", 0.0), ("a", -1.0)]])  # a reset far from the old values
def test_delta_points_cover_each_value_once(pushes: list[list[tuple[str, float]]]) -> None:
    s = store("DELTA")
    now = 1e9
    for batch in pushes:
        for label, value in batch:
            s.add(value, (label,), ())
        out: list[Any] = []
        now += 10
        s.collect(now, out)
        by_label: dict[str, list[float]] = {}
        for label, value in batch:
            by_label.setdefault(label, []).append(value)
        assert {ts.metric.labels["w"]: point(ts)[0] for ts in out} == {k: len(v) for k, v in by_label.items()}
        for ts in out:
            observed = by_label[ts.metric.labels["w"]]
            assert close(point(ts), stats(observed), max(map(abs, observed)))
