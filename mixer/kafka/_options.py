"""Where the front doors publish and the workers consume, and how (``mixer serve --mode`` flags)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

MIB = 1024 * 1024


class Mode(enum.Enum):
    """What ``mixer serve`` does with reports."""

    LOCAL = "local"  # dispatch to the handlers in this process (the default)
    FRONTDOOR = "frontdoor"  # publish accepted reports to Kafka; checks are still answered here
    WORKER = "worker"  # consume reports from Kafka as a consumer group and dispatch them


@dataclass(frozen=True, slots=True)
class KafkaOptions:
    """The defaults live here. Durations in seconds."""

    bootstrap: str = "127.0.0.1:9092"
    topic: str = "mixer-reports"
    dead_letter_topic: str = "mixer-reports-dead"
    group: str = "mixer-workers"
    client_id: str = "mixer"
    # Front door: encoded bytes published and not yet acknowledged; a report past it is refused (503).
    max_inflight_bytes: int = 32 * MIB
    publish_timeout: float = 10.0  # one report's publish, acks from every in-sync replica included
    linger: float = 0.005  # how long the producer waits to fill a batch
    # Worker
    max_poll_messages: int = 200  # messages read (and committed) together
    session_timeout: float = 10.0  # a worker that stops heartbeating loses its partitions after this
    heartbeat_interval: float = 3.0
    # A worker blocked on a handler's delivery longer than this leaves the group (its partitions move);
    # it must exceed the push handlers' retry.maxElapsedTime.
    max_poll_interval: float = 600.0
    redelivery_delay: float = 1.0  # before reading a batch again that a handler did not accept
