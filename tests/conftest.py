"""Session-wide fixtures: the real Kafka broker (fetched with Maven into the cache when missing,
started once per session on free loopback ports, stopped by PID)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mixer.thirdparty import KafkaBroker, ensure


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    with KafkaBroker(ensure("kafka"), quick_start=True) as broker:
        yield broker
