"""Helpers for tests against the real broker: fresh topics, reading a topic, a group's progress."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def new_topic(bootstrap: str, partitions: int = 4, prefix: str = "test") -> str:
    """A topic no other test uses, created with ``partitions`` partitions and one replica."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


async def read_all(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list[ConsumerRecord]:
    """Every message of ``topic`` from the start, once ``expect`` have arrived (or the timeout)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < expect:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return records


async def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Messages of ``topic`` the consumer group has not committed yet."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - a fresh client knows no topics yet
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        return sum(ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
                   for tp in partitions)
    finally:
        await admin.close()
        await consumer.stop()
