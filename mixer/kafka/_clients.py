"""What every aiokafka producer here needs at shutdown."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError

log = logging.getLogger("mixer.kafka")


async def stop_producer(producer: AIOKafkaProducer, timeout: float) -> None:
    """Flush for at most ``timeout`` seconds, then close.

    aiokafka's ``stop`` waits for every buffered message however long the broker is away; here
    whatever is still buffered then is failed instead (each such send was already answered as a
    failure to whoever made it: a publish timed out, a push batch is retried or counted as dropped).
    """
    try:
        async with asyncio.timeout(timeout):
            await producer.flush()
    except TimeoutError:
        log.warning("Kafka producer could not flush within %.1fs; failing what is left", timeout)
        # No public way to give up on buffered batches: stop the sender (it would retry for as long as
        # the broker is away), then fail what it held, as the producer itself does on a fatal error.
        await producer._sender.close()  # noqa: SLF001
        producer._message_accumulator.fail_all(KafkaTimeoutError("producer stopped before delivery"))  # noqa: SLF001
    await producer.stop()
