"""The bag encoding between front doors and workers: every attribute type survives, bad messages
are refused with a reason."""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixer.attributes import bag_from_json, default_manifest, value_to_json
from mixer.kafka import UndecodableMessage, decode_bags, encode_bags

MANIFEST = default_manifest()

EVERY_TYPE = {
    "request.path": "/reviews/1",  # STRING
    "response.code": 503,  # INT64
    "request.time": dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),  # TIMESTAMP
    "response.duration": dt.timedelta(days=-1, microseconds=7),  # DURATION, negative too
    "source.ip": ipaddress.ip_address("10.0.0.7"),  # IP_ADDRESS
    "destination.ip": ipaddress.ip_address("2001:db8::1"),
    "request.headers": {"x-b3-traceid": "abc", "": ""},  # STRING_MAP
    "connection.mtls": True,  # BOOL
}


def test_every_attribute_type_survives_the_topic() -> None:
    bags = [EVERY_TYPE, {}, {"response.code": -(2**63)}]
    decoded = decode_bags(encode_bags(bags), MANIFEST)
    assert decoded == bags
    assert type(decoded[0]["source.ip"]) is ipaddress.IPv4Address
    assert decoded[0]["request.time"].tzinfo is not None


def test_it_is_smaller_than_the_json_api() -> None:
    json_text = str({k: value_to_json(MANIFEST[k], v) for k, v in EVERY_TYPE.items()}).encode()
    assert len(encode_bags([EVERY_TYPE])) < len(json_text)


durations = st.timedeltas(min_value=dt.timedelta(days=-10**5), max_value=dt.timedelta(days=10**5))
timestamps = st.datetimes(timezones=st.just(dt.UTC))


@settings(deadline=None)  # timing varies on a shared machine; correctness is what is checked
@given(st.lists(st.fixed_dictionaries({}, optional={
    "request.path": st.text(),
    "request.size": st.integers(-(2**63), 2**63 - 1),
    "response.duration": durations,
    "request.time": timestamps,
    "request.headers": st.dictionaries(st.text(), st.text(), max_size=3),
}), max_size=5))
def test_round_trip_property(bags: list[dict[str, Any]]) -> None:
    assert decode_bags(encode_bags(bags), MANIFEST) == bags


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\xc1", "not msgpack"),
    (msgpack.packb({"a": 1}), "expected a list of bags"),
    (msgpack.packb([1]), "bag 0: expected a map"),
    (msgpack.packb([{"no.such": 1}]), "not in this worker's manifest"),
    (msgpack.packb([{"request.path": msgpack.ExtType(9, b"x")}]), "unknown value extension 9"),
    (msgpack.packb([{"response.duration": msgpack.ExtType(1, b"short")}]), "unknown value extension 1"),
    (encode_bags([EVERY_TYPE])[:-3], "not msgpack"),
])
def test_undecodable_messages_name_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(UndecodableMessage, match=reason):
        decode_bags(raw, MANIFEST)


def test_a_bag_from_the_json_api_encodes() -> None:
    bag = bag_from_json({"request.time": "2026-01-02T03:04:05Z", "response.duration": "1.5s",
                         "source.ip": "::1", "request.headers": {"a": "b"}}, MANIFEST)
    assert decode_bags(encode_bags([bag]), MANIFEST) == [bag]
