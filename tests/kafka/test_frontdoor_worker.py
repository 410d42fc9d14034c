"""Front-door mode and worker mode in this process, against the real broker: a report through the
native HTTP door is published, consumed by a worker and dispatched; dead letters; refusals."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from adapters.memory import MemoryHandler
from mixer.config import compile_config
from mixer.frontdoors import FrontDoorOptions, HttpListener, standard_doors
from mixer.frontdoors.intake import Unavailable
from mixer.kafka import (
    FORMAT,
    FORMAT_HEADER,
    KafkaOptions,
    KafkaPublisher,
    KafkaWorker,
    PublishingRuntime,
    decode_bags,
    encode_bags,
    partition_key,
)
from mixer.thirdparty import KafkaBroker, ensure
from mixer.processes import free_port
from mixer.runtime import Runtime

from .support import group_lag, new_topic, read_all

CONFIG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: recorder}
spec: {compiledAdapter: memory, params: {maxInstances: 100000}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: calls}
spec:
  compiledTemplate: logentry
  params:
    severity: '"info"'
    timestamp: request.time
    variables: {id: request.id | "", dst: destination.workload.name | "", took: response.duration | "0ms"}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: all}
spec:
  actions: [{handler: recorder, instances: [calls]}]
"""


async def runtime() -> Runtime:
    rt = Runtime()
    await rt.apply(compile_config([("kafka.yaml", CONFIG)], rt.registry))
    return rt


def recorded_ids(rt: Runtime) -> list[str]:
    handler = rt.snapshot.slots["recorder.handler.istio-system"].handler
    assert isinstance(handler, MemoryHandler)
    return [i.fields["variables"]["id"] for i in handler.instances]


def bag_json(i: int) -> dict[str, Any]:
    return {
        "request.id": f"r{i}",
        "request.time": "2026-01-02T03:04:05.678Z",
        "response.duration": "12ms",
        "destination.workload.name": f"svc{i % 5}",
        "destination.workload.namespace": "default",
        "source.ip": "10.1.2.3",
    }


def sample(rt: Runtime, name: str, **labels: str) -> float:
    return rt.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def options(kafka_broker: KafkaBroker) -> KafkaOptions:
    topic = await new_topic(kafka_broker.bootstrap, partitions=4)
    return KafkaOptions(bootstrap=kafka_broker.bootstrap, topic=topic, dead_letter_topic=f"{topic}-dead",
                        group=f"{topic}-workers", session_timeout=3.0, heartbeat_interval=1.0,
                        redelivery_delay=0.2)


@pytest.fixture
async def front_door(options: KafkaOptions) -> AsyncIterator[tuple[str, Runtime]]:
    """A front door: the native HTTP API on a free port, publishing reports to the topic."""
    rt = await runtime()
    publisher = KafkaPublisher(options, rt.metrics)
    await publisher.start()
    doors_runtime = PublishingRuntime(rt, publisher)
    listener = HttpListener(doors_runtime, standard_doors(doors_runtime, FrontDoorOptions()), "127.0.0.1", free_port())
    await listener.start()
    yield f"http://127.0.0.1:{listener.port}", rt
    await listener.stop()
    await publisher.stop()
    await rt.close()


async def wait_for(condition: Any, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def test_reports_through_the_front_door_reach_a_worker_and_are_committed(
    front_door: tuple[str, Runtime], options: KafkaOptions
) -> None:
    url, door_runtime = front_door
    async with aiohttp.ClientSession() as session:
        for start in range(0, 300, 100):
            body = {"attributes": [bag_json(i) for i in range(start, start + 100)]}
            async with session.post(f"{url}/v1/report", json=body) as reply:
                assert reply.status == 200, await reply.text()
                assert await reply.json() == {"accepted": 100, "instances": 0}  # built by the workers
    assert sample(door_runtime, "mixer_kafka_published_bags_total", topic=options.topic) == 300
    assert sample(door_runtime, "mixer_reports_total", front_door="http") == 300

    worker_runtime = await runtime()
    worker = KafkaWorker(worker_runtime, options)
    await worker.start()
    try:
        await wait_for(lambda: len(recorded_ids(worker_runtime)) >= 300)
        await wait_for(lambda: sample(worker_runtime, "mixer_kafka_commits_total", topic=options.topic) >= 1)
    finally:
        await worker.stop()
    ids = recorded_ids(worker_runtime)
    assert sorted(ids) == sorted(f"r{i}" for i in range(300))
    instance = worker_runtime.snapshot.slots["recorder.handler.istio-system"].handler.instances[0]  # type: ignore[attr-defined]
    assert instance.fields["variables"]["took"] == dt.timedelta(milliseconds=12)  # typed values survive the topic
    assert sample(worker_runtime, "mixer_kafka_consumed_bags_total", topic=options.topic) == 300
    assert sample(worker_runtime, "mixer_reports_total", front_door="kafka") == 300
    assert await group_lag(options.bootstrap, options.group, options.topic) == 0
    await worker_runtime.close()


async def test_one_destination_workload_stays_on_one_partition(
    front_door: tuple[str, Runtime], options: KafkaOptions
) -> None:
    url, door_runtime = front_door
    async with aiohttp.ClientSession() as session:
        body = {"attributes": [bag_json(i) for i in range(50)]}
        async with session.post(f"{url}/v1/report", json=body) as reply:
            assert reply.status == 200
    records = await read_all(options.bootstrap, options.topic, expect=2)
    assert all(dict(r.headers)[FORMAT_HEADER] == FORMAT for r in records)
    assert len(records) == len({r.partition for r in records})  # one message per partition per report
    partitions: dict[str, set[int]] = {}
    for record in records:
        for bag in decode_bags(record.value, door_runtime.manifest):
            partitions.setdefault(bag["destination.workload.name"], set()).add(record.partition)
    assert sorted(partitions) == [f"svc{i}" for i in range(5)]
    for workload, seen in partitions.items():
        key = partition_key({"destination.workload.namespace": "default", "destination.workload.name": workload})
        assert seen == {(murmur2(key) & 0x7FFFFFFF) % 4}  # where a message keyed by it would go


async def test_undecodable_messages_go_to_the_dead_letter_topic_and_do_not_block_the_partition(
    options: KafkaOptions,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=options.bootstrap)
    await producer.start()
    good = encode_bags([{"request.id": "after", "request.time": dt.datetime.now(dt.UTC)}])
    try:
        for value, headers in [
            (b"\xc1 not msgpack", [(FORMAT_HEADER, FORMAT)]),
            (good, []),  # no format header: who knows what wrote it
            (encode_bags([{"no.such.attribute": 1}]), [(FORMAT_HEADER, FORMAT)]),
            (good, [(FORMAT_HEADER, FORMAT)]),
        ]:
            await producer.send_and_wait(options.topic, value, key=b"same-partition", headers=headers)
    finally:
        await producer.stop()
    rt = await runtime()
    worker = KafkaWorker(rt, options)
    await worker.start()
    try:
        await wait_for(lambda: recorded_ids(rt) == ["after"])
        await wait_for(lambda: worker.batches >= 1)
    finally:
        await worker.stop()
    dead = await read_all(options.bootstrap, options.dead_letter_topic, expect=3)
    assert len(dead) == 3
    errors = [dict(r.headers)["mixer-error"].decode() for r in dead]
    assert "not msgpack" in errors[0] and "header" in errors[1] and "no.such.attribute" in errors[2]
    assert sample(rt, "mixer_kafka_dead_letters_total", topic=options.topic, reason="decode") == 2
    assert sample(rt, "mixer_kafka_dead_letters_total", topic=options.topic, reason="format") == 1
    assert await group_lag(options.bootstrap, options.group, options.topic) == 0
    await rt.close()


async def test_what_cannot_be_published_is_an_error_to_the_caller(options: KafkaOptions) -> None:
    rt = await runtime()
    tiny = KafkaOptions(bootstrap=options.bootstrap, topic=options.topic, max_inflight_bytes=1)
    publisher = KafkaPublisher(tiny, rt.metrics)
    doors_runtime = PublishingRuntime(rt, publisher)
    with pytest.raises(Unavailable, match="not running"):
        await doors_runtime.submit([{"request.id": "x"}], "test")
    await publisher.start()
    try:
        bags = [{"request.id": f"r{i}", "destination.workload.name": f"w{i}"} for i in range(20)]
        outcomes = await asyncio.gather(*(doors_runtime.submit(bags, "test") for _ in range(3)),
                                        return_exceptions=True)
    finally:
        await publisher.stop()
    refused = [o for o in outcomes if isinstance(o, Unavailable)]
    assert refused and all("in-flight budget" in str(o) for o in refused)
    assert sample(rt, "mixer_kafka_publish_failures_total", topic=options.topic, reason="overloaded") == 20 * len(refused)
    assert sample(rt, "mixer_kafka_publish_failures_total", topic=options.topic, reason="not_started") == 1
    assert sample(rt, "mixer_kafka_published_bags_total", topic=options.topic) == 20 * (3 - len(refused))
    await rt.close()


async def test_a_broker_that_is_gone_is_a_503_not_a_silent_drop(options: KafkaOptions) -> None:
    """A front door whose broker stops answering: the HTTP caller gets 503 and the bags are counted."""
    with KafkaBroker(ensure("kafka"), partitions=1, quick_start=True) as doomed:
        rt = await runtime()
        lost = KafkaOptions(bootstrap=doomed.bootstrap, topic="doomed", publish_timeout=3.0)
        publisher = KafkaPublisher(lost, rt.metrics)
        await publisher.start()
        doors_runtime = PublishingRuntime(rt, publisher)
        listener = HttpListener(doors_runtime, standard_doors(doors_runtime, FrontDoorOptions()), "127.0.0.1",
                                free_port())
        await listener.start()
        try:
            url = f"http://127.0.0.1:{listener.port}/v1/report"
            async with aiohttp.ClientSession() as session:
                async with session.post(url, json={"attributes": [bag_json(1)]}) as reply:
                    assert reply.status == 200, await reply.text()
                doomed.stop(timeout=0.5)  # gone: no controlled shutdown
                async with session.post(url, json={"attributes": [bag_json(2), bag_json(3)]}) as reply:
                    assert reply.status == 503
                    assert "could not publish" in (await reply.json())["error"]
        finally:
            await listener.stop()
            await publisher.stop()
            await rt.close()
    failures = sum(
        sample(rt, "mixer_kafka_publish_failures_total", topic="doomed", reason=reason)
        for reason in ("timeout", "broker_error")
    )
    assert failures == 2
