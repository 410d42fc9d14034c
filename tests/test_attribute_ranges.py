"""Values that fail conversion raise BagError naming the attribute, whatever the value: blank,
malformed or beyond what Python's datetime and timedelta can hold."""

from __future__ import annotations

import datetime as dt

import pytest

from mixer.attributes import (
    BagError,
    ValueType,
    duration_from_seconds,
    parse_duration,
    parse_timestamp,
    timestamp_from_seconds,
    value_from_json,
)


@pytest.mark.parametrize("text", ["", " ", "+", "-", "9" * 30 + "h", "1e9999s", "5 parsecs"])
def test_bad_durations_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["", "  ", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "yesterday"])
def test_bad_timestamps_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_seconds_beyond_range_are_value_errors() -> None:
    with pytest.raises(ValueError):
        duration_from_seconds(10**18)
    with pytest.raises(ValueError):
        duration_from_seconds(float("nan"))
    with pytest.raises(ValueError):
        timestamp_from_seconds(-(10**12))
    assert duration_from_seconds(1, 500_000_000) == dt.timedelta(seconds=1.5)
    assert timestamp_from_seconds(0) == dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (ValueType.DURATION, ""),
        (ValueType.DURATION, "   "),
        (ValueType.DURATION, 1e300),
        (ValueType.DURATION, 10**30),
        (ValueType.DURATION, "99999999999999999h"),
        (ValueType.TIMESTAMP, "0001-01-01T00:00:00+05:00"),
        (ValueType.TIMESTAMP, ""),
        (ValueType.DOUBLE, 10**400),
        (ValueType.INT64, 2**63),
    ],
)
def test_json_values_out_of_range_name_the_attribute(kind: ValueType, raw: object) -> None:
    with pytest.raises(BagError) as caught:
        value_from_json("some.attribute", kind, raw)
    assert caught.value.attribute == "some.attribute"
    assert kind.value in str(caught.value)
