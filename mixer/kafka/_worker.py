"""The worker mode: read report batches from Kafka as a consumer group and dispatch them.

Offsets are committed only after every handler has accepted the batch: a push handler's queue is in
memory, not durable, so it has accepted a batch once the batch is sent (``PushQueue.flush``) and
nothing of it was given up on for a reason a later attempt could fix (queue full, retries exhausted,
shutdown). Otherwise the worker reads the same messages again after ``redelivery_delay``: the topic
is the buffer while a backend is down. A worker that dies keeps no commit for what it had not
finished, so whoever takes its partitions reads that batch again; duplicates are bounded by one
uncommitted batch. A message that does not decode goes to the dead-letter topic (acknowledged before
the commit that moves past it) and never blocks its partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from mixer.attributes import Bag, ValueType
from mixer.frontdoors.base import FrontDoor
from mixer.kafka._clients import stop_producer
from mixer.kafka._codec import FORMAT, FORMAT_HEADER, UndecodableMessage, decode_bags
from mixer.kafka._options import KafkaOptions
from mixer.push import PushHandler, QUEUE_FULL, RETRIES_EXHAUSTED, SHUTDOWN
from mixer.runtime import Runtime, Snapshot

log = logging.getLogger("mixer.kafka")

FRONT_DOOR = "kafka"
# Drops a later attempt could avoid: the batch was not accepted and is read again.
_RETRYABLE_DROPS = (QUEUE_FULL, RETRIES_EXHAUSTED, SHUTDOWN)

Batch = Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]


def _drops(snapshot: Snapshot) -> dict[str, int]:
    return {
        name: sum(slot.handler.queue.dropped[reason] for reason in _RETRYABLE_DROPS)
        for name, slot in snapshot.slots.items()
        if isinstance(slot.handler, PushHandler) and slot.started
    }


async def sent_by_every_push_handler(snapshot: Snapshot, drops_before: Mapping[str, int]) -> list[str]:
    """Flush every push handler of ``snapshot``; the names of those that gave up on something
    (retryably) since ``drops_before`` was taken."""
    push_slots = [
        (name, slot.handler) for name, slot in snapshot.slots.items()
        if isinstance(slot.handler, PushHandler) and slot.started
    ]
    await asyncio.gather(*(handler.queue.flush() for _, handler in push_slots))
    after = _drops(snapshot)
    return [name for name, _ in push_slots if after.get(name, 0) > drops_before.get(name, 0)]


class KafkaWorker(FrontDoor):
    """A front door whose input is the report topic; started and stopped by ``mixer serve``."""

    name = FRONT_DOOR

    def __init__(self, runtime: Runtime, options: KafkaOptions) -> None:
        self.runtime = runtime
        self.options = options
        self._consumer: AIOKafkaConsumer | None = None
        self._dead_letters: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        metrics = runtime.metrics
        topic = options.topic
        self._consumed = metrics.kafka_consumed.labels(topic)
        self._commits = metrics.kafka_commits.labels(topic)
        self._redeliveries = metrics.kafka_redeliveries.labels(topic)
        self._committed = metrics.kafka_committed.labels(topic)
        self._commit_refusals = metrics.kafka_commit_refusals.labels(topic)
        self._lag_reported: set[TopicPartition] = set()
        self.batches = 0  # batches committed (tests and benchmarks wait on it)

    async def start(self) -> None:
        opts = self.options
        self._dead_letters = AIOKafkaProducer(
            bootstrap_servers=opts.bootstrap, client_id=f"{opts.client_id}-deadletters",
            acks="all", enable_idempotence=True,
        )
        self._consumer = AIOKafkaConsumer(
            opts.topic,
            bootstrap_servers=opts.bootstrap,
            client_id=f"{opts.client_id}-worker",
            group_id=opts.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=opts.max_poll_messages,
            session_timeout_ms=int(opts.session_timeout * 1000),
            heartbeat_interval_ms=int(opts.heartbeat_interval * 1000),
            max_poll_interval_ms=int(opts.max_poll_interval * 1000),
        )
        try:
            await self._dead_letters.start()
            try:
                await self._consumer.start()
            except BaseException:
                await self._dead_letters.stop()
                raise
        except KafkaError as exc:
            raise OSError(f"cannot reach Kafka at {opts.bootstrap}: {type(exc).__name__}: {exc}") from None
        self._task = asyncio.create_task(self._run(), name="kafka-worker")
        log.info("worker consuming %s on %s as group %s", opts.topic, opts.bootstrap, opts.group)

    async def stop(self) -> None:
        """Finish the batch in hand (its commit included), leave the group, close; safe twice."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, self.options.session_timeout)
            except (TimeoutError, asyncio.CancelledError):
                pass  # cancelled mid-batch: nothing was committed for it, another worker reads it again
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        producer, self._dead_letters = self._dead_letters, None
        if producer is not None:
            await stop_producer(producer, self.options.publish_timeout)

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stopping.is_set():
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=self.options.max_poll_messages)
                if batch:
                    await self._process(consumer, batch)
                await self._report_lag(consumer)
            except asyncio.CancelledError:
                raise
            except Exception:  # a broker hiccup must not end the worker: log, wait, poll again
                log.exception("worker: reading %s failed; retrying", self.options.topic)
                await asyncio.sleep(self.options.redelivery_delay)

    async def _process(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        runtime = self.runtime
        snapshot = runtime.snapshot
        manifest = snapshot.config.manifest
        drops_before = _drops(snapshot)
        consumed = 0
        step = runtime.batch_size
        try:
            bags: list[Bag] = []
            for records in batch.values():
                for record in records:
                    try:
                        bags += self._decode(record, manifest)
                    except UndecodableMessage as exc:
                        await self._dead_letter(record, exc)
            # handlers are called once per slice of the runtime's batch size, whatever the message sizes
            for start in range(0, len(bags), step):
                chunk = bags[start : start + step]
                runtime.report(chunk, FRONT_DOOR)
                consumed += len(chunk)
                self._consumed.inc(len(chunk))
                await asyncio.sleep(0)  # let checks and heartbeats in between slices
            refused = await sent_by_every_push_handler(snapshot, drops_before)
        except KafkaError as exc:  # the dead-letter topic could not take a message
            log.warning("worker: dead-letter publish failed (%s); reading the batch again", exc)
            refused = ["dead letters"]
        if refused:
            self._redeliveries.inc()
            log.warning("worker: %s did not accept the batch; reading it again", ", ".join(refused))
            for tp, records in batch.items():
                consumer.seek(tp, records[0].offset)
            await asyncio.sleep(self.options.redelivery_delay)
            return
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:  # the partitions moved meanwhile
            self._commit_refusals.inc(consumed)
            log.warning("worker: commit refused (%s); the batch will be read again by the partitions' owner", exc)
            return
        self._commits.inc()
        self._committed.inc(consumed)
        self.batches += 1

    @staticmethod
    def _decode(record: ConsumerRecord[bytes, bytes], manifest: Mapping[str, ValueType]) -> list[Bag]:
        headers = dict(record.headers or ())
        fmt = headers.get(FORMAT_HEADER)
        if fmt != FORMAT:
            raise UndecodableMessage(f"{FORMAT_HEADER} header is {fmt!r}, expected {FORMAT!r}", reason="format")
        if record.value is None:
            raise UndecodableMessage("empty message")
        return decode_bags(record.value, manifest)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], error: UndecodableMessage) -> None:
        producer = self._dead_letters
        assert producer is not None
        headers = [
            *(record.headers or ()),
            ("mixer-error", str(error).encode()),
            ("mixer-source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        await producer.send_and_wait(self.options.dead_letter_topic, record.value, key=record.key, headers=headers)
        self.runtime.metrics.kafka_dead_letters.labels(self.options.topic, error.reason).inc()
        log.warning("worker: %s/%d/%d moved to %s: %s", record.topic, record.partition, record.offset,
                    self.options.dead_letter_topic, error)

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Per assigned partition: the broker's high watermark minus this worker's position (what is
        committed, between batches); partitions no longer assigned lose their series."""
        lag = self.runtime.metrics.kafka_lag
        assigned = consumer.assignment()
        for tp in self._lag_reported - assigned:
            lag.remove(tp.topic, str(tp.partition))
        self._lag_reported &= assigned
        for tp in assigned:
            highwater = consumer.highwater(tp)
            if highwater is None:  # nothing fetched from it yet
                continue
            position = await consumer.position(tp)
            lag.labels(tp.topic, str(tp.partition)).set(max(highwater - position, 0))
            self._lag_reported.add(tp)
