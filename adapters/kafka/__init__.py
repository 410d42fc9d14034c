"""The kafka adapter: logentry, metric and tracespan instances as JSON messages on a Kafka topic.

One message per instance (downstream consumers read one JSON object at a time), keyed by the
instance name so each instance's messages stay in order on one partition. Values are JSON as the
native API writes them (timestamps RFC 3339, durations ``"1.5s"``, IPs as text, bytes base64).
Delivery goes through the push helper (``delivery:`` params): batched, retried with backoff, every
item given up on counted. The producer is idempotent with ``acks=all``: a batch is sent once every
in-sync replica has it.

    kind: handler
    spec:
      compiledAdapter: kafka
      params: {brokers: "kafka:9092", topic: mesh-telemetry, delivery: {batchSize: 1000}}
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
)

from mixer.attributes import type_of_value, value_to_json
from mixer.kafka import stop_producer
from mixer.push import DeliverySettings, PermanentError, PushHandler, parse_delivery
from mixer.sdk import Adapter, Env, Instance, InstanceSchema, MetricInstance, ParamsError, unknown_fields

__all__ = ["KafkaAdapter", "KafkaHandler", "KafkaParams"]

# Errors no retry can fix: the batch is dropped (``permanent_error``) instead of retried.
_PERMANENT = (MessageSizeTooLargeError, RecordListTooLargeError, InvalidTopicError, TopicAuthorizationFailedError)
_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

Message = tuple[bytes, bytes]  # (key, JSON value)


@dataclass(frozen=True)
class KafkaParams:
    brokers: str
    topic: str
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    max_message_bytes: int = 1024 * 1024


def _json_default(value: Any) -> Any:
    return value_to_json(type_of_value(value), value)


def _dumps(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


class KafkaHandler(PushHandler[Message]):
    def __init__(self, params: KafkaParams, env: Env, instances: Mapping[str, InstanceSchema]) -> None:
        super().__init__(params.delivery, env, size_of=lambda message: len(message[1]) + len(message[0]))
        self.params = params
        self.dimension_names = {name: schema.dimension_names for name, schema in instances.items()}
        self.producer: AIOKafkaProducer | None = None

    async def _connected(self) -> AIOKafkaProducer:
        """The producer, connected on first use: a broker that is down when config loads (or later)
        is retried by the push queue instead of failing the load."""
        if self.producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.params.brokers,
                client_id=f"mixer-{self.env.handler_name}",
                acks="all",
                enable_idempotence=True,
                max_request_size=self.params.max_message_bytes,
                request_timeout_ms=int(self.params.delivery.timeout * 1000),
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self.producer = producer
        return self.producer

    async def close(self) -> None:
        await super().close()  # drains the queue first: the producer is still needed
        producer, self.producer = self.producer, None
        if producer is not None:
            await stop_producer(producer, self.params.delivery.shutdown_timeout)

    def handle_logentry(self, instances: Sequence[Instance]) -> None:
        self.queue.offer([self._message(i.name, {"instance": i.name, "template": "logentry", **i.fields})
                          for i in instances])

    def handle_tracespan(self, instances: Sequence[Instance]) -> None:
        self.queue.offer([self._message(i.name, {"instance": i.name, "template": "tracespan", **i.fields})
                          for i in instances])

    def handle_metric(self, instances: Sequence[MetricInstance]) -> None:
        names = self.dimension_names
        self.queue.offer([
            self._message(i.name, {
                "instance": i.name,
                "template": "metric",
                "value": i.value,
                "dimensions": dict(zip(names.get(i.name, ()), i.dimensions)),
            })
            for i in instances
        ])

    def _message(self, key: str, record: dict[str, Any]) -> Message:
        return key.encode(), _dumps(record)

    async def send(self, batch: list[Message]) -> None:
        producer = await self._connected()
        topic = self.params.topic
        pending = [await producer.send(topic, value, key=key) for key, value in batch]
        results = await asyncio.gather(*pending, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if not failures:
            return
        permanent = [f for f in failures if isinstance(f, _PERMANENT)]
        if len(permanent) == len(failures):
            raise PermanentError(f"topic {topic} refused {len(permanent)} messages: {permanent[0]!r}",
                                 rejected=len(permanent))
        # Some were appended and some not: the whole batch is retried (the idempotent producer does
        # not dedupe a resend of a new send call; a consumer may see those messages twice).
        raise failures[0]


class KafkaAdapter(Adapter):
    name = "kafka"
    templates = frozenset({"logentry", "metric", "tracespan"})

    def parse_params(self, raw: Mapping[str, Any]) -> KafkaParams:
        problems = unknown_fields(raw, ("brokers", "topic", "maxMessageBytes", "delivery"))
        brokers = raw.get("brokers")
        if not isinstance(brokers, str) or not brokers.strip():
            problems.append(("brokers", f"must be host:port[,host:port...], got {brokers!r}"))
        else:
            for broker in brokers.split(","):
                host, _, port = broker.strip().rpartition(":")
                if not host or not port.isdigit() or not 0 < int(port) < 65536:
                    problems.append(("brokers", f"{broker.strip()!r} is not host:port"))
        topic = raw.get("topic")
        if not isinstance(topic, str) or not topic:
            problems.append(("topic", f"must be a topic name, got {topic!r}"))
        elif len(topic) > 249 or topic in (".", "..") or not set(topic) <= _TOPIC_CHARS:
            problems.append(("topic", f"{topic!r} is not a valid Kafka topic name (letters, digits, '.', '_', '-')"))
        max_bytes = raw.get("maxMessageBytes", KafkaParams.max_message_bytes)
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1024:
            problems.append(("maxMessageBytes", f"must be an integer >= 1024, got {max_bytes!r}"))
        delivery, delivery_problems = parse_delivery(raw.get("delivery"))
        problems += delivery_problems
        if problems:
            raise ParamsError(problems)
        assert isinstance(brokers, str) and isinstance(topic, str) and isinstance(max_bytes, int)
        return KafkaParams(brokers, topic, delivery, max_bytes)

    def build(self, params: KafkaParams, env: Env, instances: Mapping[str, InstanceSchema]) -> KafkaHandler:
        return KafkaHandler(params, env, instances)
