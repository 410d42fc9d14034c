"""Envoy's TCP entries carry byte totals; the access log door reports what is new in each."""

from __future__ import annotations

from mixer.attributes import Bag
from mixer.frontdoors.als import TcpByteDeltas


def _entry(connection: str, event: str, received: int, sent: int) -> Bag:
    return {"connection.id": connection, "connection.event": event,
            "connection.received.bytes_total": received, "connection.sent.bytes_total": sent,
            "connection.received.bytes": received, "connection.sent.bytes": sent}


def test_each_entry_reports_the_bytes_since_the_previous_one() -> None:
    deltas = TcpByteDeltas()
    got = [deltas.apply(_entry("c1", event, received, sent))
           for event, received, sent in [("open", 0, 0), ("continue", 100, 10), ("continue", 100, 10),
                                         ("continue", 250, 30), ("close", 300, 30)]]
    assert [(b["connection.received.bytes"], b["connection.sent.bytes"]) for b in got] == [
        (0, 0), (100, 10), (0, 0), (150, 20), (50, 0)]
    assert got[-1]["connection.received.bytes_total"] == 300
    # closed: forgotten, so a reused id starts again from zero
    assert deltas.apply(_entry("c1", "close", 40, 4))["connection.received.bytes"] == 40


def test_connections_are_tracked_independently_and_bounded() -> None:
    deltas = TcpByteDeltas(max_connections=2)
    for connection in ("a", "b", "c"):  # "a" is forgotten when "c" arrives
        deltas.apply(_entry(connection, "continue", 100, 100))
    assert deltas.apply(_entry("c", "continue", 150, 100))["connection.received.bytes"] == 50
    assert deltas.apply(_entry("a", "continue", 150, 100))["connection.received.bytes"] == 150
    assert deltas.apply({"connection.event": "close", "connection.received.bytes": 7})["connection.received.bytes"] == 7
