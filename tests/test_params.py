"""The shared params reader: keys quoted as the user wrote them, missing ones in the documented spelling."""

from __future__ import annotations

from mixer.params import BUCKET_KINDS, Fields, parse_buckets


def test_unknown_key_is_quoted_as_written_in_either_style() -> None:
    for camel_paths in (False, True):
        problems: list[tuple[str, str]] = []
        Fields({"push_intervall": 1}, "top", ["push_interval"], problems, camel_paths=camel_paths)
        expected = "pushInterval" if camel_paths else "push_interval"
        assert problems == [("top.push_intervall", f"unknown field (known: {expected})")]


def test_missing_key_is_named_in_the_documented_spelling() -> None:
    problems: list[tuple[str, str]] = []
    Fields({}, "", ["metric_type"], problems, camel_paths=True).problem("metric_type", "required")
    Fields({}, "", ["metric_type"], problems).problem("metric_type", "required")
    assert problems == [("metricType", "required"), ("metric_type", "required")]


def test_a_key_given_in_both_spellings_is_one_problem_naming_both() -> None:
    problems: list[tuple[str, str]] = []
    fields = Fields({"maxSeries": 1, "max_series": 2}, "m", ["max_series"], problems)
    assert problems == [("m.max_series", "given twice (as maxSeries and max_series)")]
    assert fields.get("max_series") == 1


def test_buckets_report_every_problem_of_the_kind_given() -> None:
    problems: list[tuple[str, str]] = []
    raw = {"exponentialBuckets": {"numFiniteBuckets": 0, "growthFactor": 1, "scale": 1}}
    assert parse_buckets(Fields(raw, "b", BUCKET_KINDS, problems, camel_paths=True)) is None
    assert problems == [
        ("b.exponentialBuckets.numFiniteBuckets", "required, must be >= 1"),
        ("b.exponentialBuckets.growthFactor", "required, must be > 1"),
    ]


def test_linear_buckets_give_n_plus_one_finite_bounds() -> None:
    problems: list[tuple[str, str]] = []
    raw = {"linear_buckets": {"num_finite_buckets": 3, "width": 2, "offset": 1}}
    buckets = parse_buckets(Fields(raw, "", BUCKET_KINDS, problems))
    assert problems == [] and buckets is not None
    assert buckets.bounds == (1.0, 3.0, 5.0, 7.0) and buckets.num_finite_buckets == 3
