"""The front-door mode: accepted report batches go to a Kafka topic instead of the local handlers.

The partition key is the destination workload: each bag goes to the partition Kafka's own
partitioner (murmur2 of the key, as a keyed message would) picks for it, so one series is always
aggregated by the one worker that owns that partition. A report becomes one message per partition it
touches (not one per workload: per-message costs dominate at small sizes). The producer is idempotent with ``acks=all``, and a report
is answered only once every message of it is acknowledged: an answer of success means the bags are
in the topic. What cannot be published (broker down, timeout, the in-flight byte budget spent) is
answered as ``Unavailable`` (HTTP 503 / gRPC UNAVAILABLE) and counted, never dropped silently.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from mixer.attributes import Bag, ValueType
from mixer.frontdoors.intake import Unavailable
from mixer.kafka._clients import stop_producer
from mixer.kafka._codec import FORMAT, FORMAT_HEADER, encode_bags
from mixer.kafka._options import KafkaOptions
from mixer.sdk import QuotaArgs
from mixer.selfmetrics import SelfMetrics

if TYPE_CHECKING:
    from mixer.runtime import CheckResponse, Runtime, Snapshot

log = logging.getLogger("mixer.kafka")

_HEADERS = [(FORMAT_HEADER, FORMAT)]


def partition_key(bag: Bag) -> bytes:
    """The destination workload (namespace/name): every bag of one series lands on one partition."""
    namespace = bag.get("destination.workload.namespace", "")
    name = bag.get("destination.workload.name", "")
    return f"{namespace}/{name}".encode()


_MAX_CACHED_KEYS = 100_000  # workloads whose partition is remembered (murmur2 is pure Python)


class Partitioner:
    """Destination workload -> partition, as Kafka's default partitioner maps a message key."""

    def __init__(self) -> None:
        self._count = 0
        self._of: dict[bytes, int] = {}

    def group(self, bags: Sequence[Bag], partitions: int) -> dict[int, list[Bag]]:
        if partitions != self._count:  # the topic grew: every key may move
            self._of.clear()
            self._count = partitions
        of = self._of
        groups: dict[int, list[Bag]] = {}
        for bag in bags:
            key = partition_key(bag)
            partition = of.get(key)
            if partition is None:
                if len(of) >= _MAX_CACHED_KEYS:
                    of.clear()
                partition = of[key] = (murmur2(key) & 0x7FFFFFFF) % partitions
            group = groups.get(partition)
            if group is None:
                groups[partition] = [bag]
            else:
                group.append(bag)
        return groups


class KafkaPublisher:
    """An idempotent producer with a bounded in-flight byte budget; ``publish`` returns once acknowledged."""

    def __init__(self, options: KafkaOptions, metrics: SelfMetrics) -> None:
        self.options = options
        self.metrics = metrics
        self._producer: AIOKafkaProducer | None = None
        self._inflight = 0
        self._partitioner = Partitioner()
        self._published = metrics.kafka_published.labels(options.topic)

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        opts = self.options
        producer = AIOKafkaProducer(
            bootstrap_servers=opts.bootstrap,
            client_id=f"{opts.client_id}-frontdoor",
            acks="all",
            enable_idempotence=True,
            linger_ms=int(opts.linger * 1000),
            request_timeout_ms=int(opts.publish_timeout * 1000),
            max_batch_size=1024 * 1024,
            max_request_size=4 * 1024 * 1024,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise OSError(f"cannot reach Kafka at {opts.bootstrap}: {_describe(exc)}") from None
        self._producer = producer
        log.info("front door publishing reports to %s on %s", opts.topic, opts.bootstrap)

    async def stop(self) -> None:
        """Send what is buffered, then close; safe twice and without start."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_producer(producer, self.options.publish_timeout)

    async def publish(self, bags: Sequence[Bag]) -> None:
        """Publish one batch; ``Unavailable`` when any of it was not acknowledged."""
        producer = self._producer
        topic = self.options.topic
        if producer is None:
            self._failed(len(bags), "not_started")
            raise Unavailable("the Kafka publisher is not running")
        if not bags:
            return
        try:
            partitions = len(await producer.partitions_for(topic))
        except KafkaError as exc:
            self._failed(len(bags), "broker_error")
            raise Unavailable(f"no metadata for Kafka topic {topic}: {_describe(exc)}") from None
        messages = [
            (partition, encode_bags(group), len(group))
            for partition, group in self._partitioner.group(bags, partitions).items()
        ]
        size = sum(len(value) for _, value, _ in messages)
        if self._inflight + size > self.options.max_inflight_bytes and self._inflight:
            self._failed(len(bags), "overloaded")
            raise Unavailable(f"Kafka publisher over its in-flight budget ({self.options.max_inflight_bytes} bytes)")
        # The budget is held until each message is delivered or failed, not just while this call
        # waits: a publish that timed out still holds its bytes in the producer.
        self._hold(size)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.publish_timeout
        handed: list[tuple[asyncio.Future[Any], int]] = []
        try:
            async with asyncio.timeout_at(deadline):
                for partition, value, count in messages:
                    future = await producer.send(topic, value, partition=partition, headers=_HEADERS)
                    future.add_done_callback(functools.partial(self._settled, len(value)))
                    handed.append((future, count))
        except (KafkaError, TimeoutError) as exc:
            self._hold(-(size - sum(len(value) for _, value, _ in messages[: len(handed)])))
            self._failed(len(bags), "timeout" if isinstance(exc, TimeoutError) else "broker_error")
            raise Unavailable(f"could not publish to Kafka topic {topic}: {_describe(exc)}") from None
        _, waiting = await asyncio.wait([f for f, _ in handed], timeout=max(deadline - loop.time(), 0))
        if waiting:
            self._failed(len(bags), "timeout")
            raise Unavailable(f"could not publish to Kafka topic {topic}: not acknowledged within "
                              f"{self.options.publish_timeout:g}s")
        failures = [(error, count) for f, count in handed if (error := f.exception()) is not None]
        lost = sum(count for _, count in failures)
        self._published.inc(len(bags) - lost)
        if failures:
            self._failed(lost, "broker_error")
            raise Unavailable(f"{lost} of {len(bags)} bags not published to Kafka topic {topic}: "
                              f"{_describe(failures[0][0])}")

    def _hold(self, size: int) -> None:
        self._inflight += size
        self.metrics.kafka_inflight_bytes.set(self._inflight)

    def _settled(self, size: int, future: asyncio.Future[Any]) -> None:
        """A message left the producer (acknowledged or failed): its bytes leave the budget."""
        self._hold(-size)
        if not future.cancelled():
            future.exception()  # retrieved here: a failure after the caller stopped waiting is not "never retrieved"

    def _failed(self, count: int, reason: str) -> None:
        self.metrics.kafka_publish_failures.labels(self.options.topic, reason).inc(count)
        log.warning("could not publish %d bags to %s (%s)", count, self.options.topic, reason)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class PublishingRuntime:
    """The runtime as the front doors see it in front-door mode: checks here, reports to Kafka.

    Everything but ``submit`` is the local runtime's (config, manifest, self metrics, checks, the
    snapshot the served-policy door follows).
    """

    def __init__(self, runtime: Runtime, publisher: KafkaPublisher) -> None:
        self._runtime = runtime
        self._publisher = publisher

    @property
    def manifest(self) -> Mapping[str, ValueType]:
        return self._runtime.manifest

    @property
    def metrics(self) -> SelfMetrics:
        return self._runtime.metrics

    @property
    def ready(self) -> bool:
        return self._runtime.ready and self._publisher.started

    @property
    def batch_size(self) -> int:
        return self._runtime.batch_size

    async def submit(self, bags: Sequence[Bag], front_door: str) -> int:
        self._runtime.metrics.reports.labels(front_door).inc(len(bags))
        await self._publisher.publish(bags)
        return 0  # instances are built by the workers

    async def check(self, bag: Bag, quotas: Mapping[str, QuotaArgs], front_door: str) -> CheckResponse:
        return await self._runtime.check(bag, quotas, front_door)

    @property
    def snapshot(self) -> Snapshot:
        return self._runtime.snapshot

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]:
        return self._runtime.subscribe(callback)
