"""Text and JSON forms of attribute values -> Python values, and the errors that name the attribute."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest

from mixer.attributes import BagError, ValueType, value_from_json, value_from_text

STAMP = dt.datetime(2026, 11, 26, 6, 22, 34, 779880, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        (ValueType.STRING, "frontend-v1", "frontend-v1"),
        (ValueType.ANY, "7", "7"),
        (ValueType.INT64, " 42 ", 42),
        (ValueType.DOUBLE, "1.5", 1.5),
        (ValueType.BOOL, " TRUE ", True),
        (ValueType.BOOL, "false", False),
        (ValueType.DURATION, "1h2m", dt.timedelta(hours=1, minutes=2)),
        (ValueType.TIMESTAMP, "2026-11-26T06:22:34.779880123Z", STAMP),
        (ValueType.IP_ADDRESS, "::1", ipaddress.ip_address("::1")),
        (ValueType.STRING_MAP, '{"app": "reviews"}', {"app": "reviews"}),
        (ValueType.BYTES, "aGVsbG8=", b"hello"),
    ],
)
def test_value_from_text(kind: ValueType, text: str, value: object) -> None:
    assert value_from_text("a.b", kind, text) == value


@pytest.mark.parametrize(
    ("kind", "text", "reason"),
    [
        (ValueType.INT64, "9223372036854775808", "out of INT64 range"),
        (ValueType.INT64, "4.2", "invalid literal"),
        (ValueType.BOOL, "yes", "not true or false"),
        (ValueType.DURATION, "soon", "invalid duration"),
        (ValueType.IP_ADDRESS, "300.1.1.1", "does not appear to be an IPv4 or IPv6 address"),
        (ValueType.STRING_MAP, '{"a": 1}', "not a JSON object of strings"),
        (ValueType.STRING_MAP, "{", "unexpected end of data"),
        (ValueType.BYTES, "not base64!", "only base64 data is allowed"),
    ],
)
def test_value_from_text_errors_name_the_attribute(kind: ValueType, text: str, reason: str) -> None:
    with pytest.raises(BagError) as caught:
        value_from_text("a.b", kind, text)
    assert caught.value.attribute == "a.b"
    assert str(caught.value).startswith(f"attribute 'a.b': expected {kind.value}, got {text!r} (")
    assert reason.lower() in str(caught.value).lower()


def test_json_reads_text_encoded_values_as_text_does() -> None:
    for kind, text in [
        (ValueType.TIMESTAMP, "2026-11-26T06:22:34.779880Z"),
        (ValueType.IP_ADDRESS, "10.0.0.1"),
        (ValueType.BYTES, "aGVsbG8="),
        (ValueType.DURATION, "250ms"),
        (ValueType.INT64, "-7"),
    ]:
        assert value_from_json("a.b", kind, text) == value_from_text("a.b", kind, text)


def test_json_is_stricter_than_text_where_json_has_its_own_type() -> None:
    # JSON carries numbers and booleans natively; only proto3's int64-as-text is read from a string.
    assert value_from_json("a.b", ValueType.INT64, "12") == 12
    for kind, raw in [(ValueType.INT64, " 12 "), (ValueType.BOOL, "true"), (ValueType.DOUBLE, "1.5"),
                      (ValueType.STRING_MAP, '{"a": "b"}'), (ValueType.TIMESTAMP, 0)]:
        with pytest.raises(BagError, match=r"^attribute 'a\.b': expected .*got (a string|a number)"):
            value_from_json("a.b", kind, raw)
    with pytest.raises(BagError, match="out of INT64 range"):
        value_from_json("a.b", ValueType.INT64, 2**63)
