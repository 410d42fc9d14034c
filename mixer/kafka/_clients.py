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
        # no public way to give up on buffered batches; this is what the producer does on fatal errors
        producer._message_accumulator.fail_all(KafkaTimeoutError("producer stopped before delivery"))  # noqa: SLF001
        try:
            await producer.stop()
        except Exception as exc:  # the sender trips over the batches failed under it; close the client anyway
            log.debug("Kafka producer stopped with %r", exc)
            await producer.client.close()
        return
    await producer.stop()
