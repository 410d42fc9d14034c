"""PushQueue against a real loopback HTTP backend that fails on purpose.

Every test ends with the accounting identity: offered == sent + dropped, exactly, on the object and
in mixer_sent_instances_total / mixer_dropped_instances_total.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from mixer.push import DeliverySettings, PushQueue
from mixer.sdk import Env

from .conftest import Backend, Build, Reply, sample, until
from .httpjson import HttpJsonHandler

FAST_RETRY = "retry: {initialInterval: 10ms, maxInterval: 40ms, multiplier: 2, jitter: 0.5, maxElapsedTime: 10s}"


def items(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"n": i} for i in range(start, start + count)]


def assert_accounted(handler: HttpJsonHandler, env: Env) -> None:
    queue = handler.queue
    assert queue.queued == 0 and queue.in_flight == 0
    assert queue.offered == queue.sent + sum(queue.dropped.values()), (queue.offered, queue.sent, queue.dropped)
    assert sample(env, "mixer_sent_instances_total") == queue.sent
    for reason, count in queue.dropped.items():
        assert sample(env, "mixer_dropped_instances_total", reason=reason) == count, reason


async def test_everything_offered_arrives_in_order(build: Build, backend: Backend, env: Env) -> None:
    handler = await build("{batchSize: 100, batchTimeout: 10ms}")
    for start in range(0, 1000, 250):
        assert handler.queue.offer(items(250, start)) == 250
    await handler.queue.flush()
    assert backend.accepted == items(1000)
    assert all(length <= 100 for _, length in backend.calls)
    await handler.close()
    assert handler.queue.sent == 1000
    assert_accounted(handler, env)


async def test_item_bound_holds_and_the_rest_is_counted_queue_full(build: Build, backend: Backend, env: Env) -> None:
    handler = await build("{queueSize: 10, batchSize: 10, batchTimeout: 1h}")
    backend.program(Reply(hang=True))  # the first batch occupies one sender...
    handler.queue.offer(items(10))
    await until(lambda: len(backend.calls) == 1)
    assert handler.queue.offer(items(25, 10)) == 10  # ...the queue takes its 10, the rest is dropped
    assert handler.queue.queued == 10
    assert sample(env, "mixer_queue_depth") == 10
    assert handler.queue.dropped["queue_full"] == 15
    backend.release.set()  # the hung request answers 503 and is retried
    await handler.queue.flush()
    assert sample(env, "mixer_queue_depth") == 0
    assert sorted(item["n"] for item in backend.accepted) == list(range(20))
    await handler.close()
    assert_accounted(handler, env)


async def test_byte_bound_holds_with_an_estimator(backend: Backend, env: Env) -> None:
    sent: list[str] = []

    async def send(batch: list[str]) -> None:
        sent.extend(batch)

    settings = DeliverySettings(queue_bytes=100, batch_timeout=3600)
    queue: PushQueue[str] = PushQueue(send, settings, env, size_of=len)
    assert queue.offer(["x" * 40, "y" * 40, "z" * 40, "w" * 10]) == 2  # arrival order kept: z and w drop
    assert queue.queued_bytes == 80 and queue.dropped["queue_full"] == 2
    assert queue.offer(["v" * 20, "u"]) == 1
    assert queue.queued_bytes == 100
    await queue.start()
    await queue.flush()
    assert queue.queued_bytes == 0 and sent == ["x" * 40, "y" * 40, "v" * 20]
    assert queue.offer(["t" * 100]) == 1  # the budget is free again once sent
    await queue.close()
    assert queue.offered == queue.sent + sum(queue.dropped.values()) == 7
    assert sample(env, "mixer_dropped_instances_total", reason="queue_full") == 3


async def test_batches_are_cut_by_size_then_by_timeout(build: Build, backend: Backend, env: Env) -> None:
    handler = await build("{batchSize: 5, batchTimeout: 1h}")
    handler.queue.offer(items(12))
    await until(lambda: sum(length for _, length in backend.calls) == 10)
    assert [length for _, length in backend.calls] == [5, 5]
    assert handler.queue.queued == 2  # a partial batch waits for its timeout (an hour here)
    await handler.queue.flush()
    assert [length for _, length in backend.calls] == [5, 5, 2]

    timed = await build("{batchSize: 5, batchTimeout: 50ms}")
    calls_before = len(backend.calls)
    started = min(t for t, _ in backend.calls)
    timed.queue.offer(items(3))
    await until(lambda: len(backend.calls) == calls_before + 1)  # no flush: the timeout sends it
    assert backend.calls[-1][1] == 3 and backend.calls[-1][0] > started
    await handler.close()
    await timed.close()
    assert (handler.queue.sent, timed.queue.sent) == (12, 3)  # both share env: the metric holds their sum
    assert sample(env, "mixer_sent_instances_total") == 15 and not any(handler.queue.dropped.values())


async def test_retries_back_off_exponentially_with_jitter(build: Build, backend: Backend, env: Env) -> None:
    handler = await build("{senders: 1, batchTimeout: 0s, " + FAST_RETRY + "}")
    backend.program(Reply(503), Reply(503), Reply(503), Reply(503))
    handler.queue.offer(items(7))
    await handler.queue.flush()
    assert len(backend.calls) == 5 and backend.accepted == items(7)
    gaps = [later[0] - earlier[0] for earlier, later in zip(backend.calls, backend.calls[1:])]
    # intervals 10, 20, 40, 40 ms (max 40), each jittered by +-50%: never shorter than half of it
    for gap, interval in zip(gaps, (0.010, 0.020, 0.040, 0.040)):
        assert gap >= interval * 0.5 - 0.001, gaps
    await handler.close()
    assert_accounted(handler, env)


async def test_retry_after_floors_the_next_delay(build: Build, backend: Backend, env: Env) -> None:
    handler = await build("{senders: 1, batchTimeout: 0s, " + FAST_RETRY + "}")
    backend.program(Reply(429, retry_after=0.3))
    handler.queue.offer(items(3))
    await handler.queue.flush()
    assert len(backend.calls) == 2
    assert backend.calls[1][0] - backend.calls[0][0] >= 0.3 - 0.001
    await handler.close()
    assert handler.queue.sent == 3
    assert_accounted(handler, env)


async def test_permanent_errors_are_not_retried(build: Build, backend: Backend, env: Env) -> None:
    handler = await build("{senders: 1, batchTimeout: 0s, " + FAST_RETRY + "}")
    backend.program(Reply(400))
    handler.queue.offer(items(4))
    await handler.queue.flush()
    assert len(backend.calls) == 1
    assert handler.queue.dropped["permanent_error"] == 4 and handler.queue.sent == 0
    await handler.close()
    assert_accounted(handler, env)


async def test_a_partial_rejection_loses_only_the_rejected_items(build: Build, backend: Backend, env: Env) -> None:
    handler = await build("{senders: 1, batchTimeout: 0s}")
    backend.program(Reply(rejected=2))
    handler.queue.offer(items(5))
    await handler.queue.flush()
    assert len(backend.calls) == 1 and backend.accepted == items(3, 2)
    assert handler.queue.sent == 3 and handler.queue.dropped["permanent_error"] == 2
    await handler.close()
    assert_accounted(handler, env)


async def test_max_elapsed_time_gives_retries_exhausted(build: Build, backend: Backend, env: Env) -> None:
    handler = await build(
        "{senders: 1, batchTimeout: 0s, retry: {initialInterval: 10ms, maxInterval: 20ms, maxElapsedTime: 100ms}}"
    )
    backend.program(*[Reply(503)] * 100)
    handler.queue.offer(items(6))
    await handler.queue.flush()
    assert 2 <= len(backend.calls) < 100
    assert handler.queue.dropped["retries_exhausted"] == 6 and handler.queue.sent == 0
    await handler.close()
    assert_accounted(handler, env)


async def test_retry_disabled_gives_up_after_one_attempt(build: Build, backend: Backend, env: Env) -> None:
    handler = await build("{batchTimeout: 0s, retry: {enabled: false}}")
    backend.program(Reply(503))
    handler.queue.offer(items(2))
    await handler.queue.flush()
    assert len(backend.calls) == 1 and handler.queue.dropped["retries_exhausted"] == 2
    await handler.close()
    assert_accounted(handler, env)


async def test_a_hung_send_times_out_and_is_retried(build: Build, backend: Backend, env: Env) -> None:
    handler = await build("{senders: 1, batchTimeout: 0s, timeout: 100ms, " + FAST_RETRY + "}")
    backend.program(Reply(hang=True))
    handler.queue.offer(items(3))
    await handler.queue.flush()
    assert len(backend.calls) == 2 and backend.accepted == items(3)
    await handler.close()
    assert_accounted(handler, env)


async def test_close_sends_what_is_queued_even_a_partial_batch(build: Build, backend: Backend, env: Env) -> None:
    handler = await build("{batchSize: 100, batchTimeout: 1h}")
    handler.queue.offer(items(250))
    await handler.close()
    assert sorted(item["n"] for item in backend.accepted) == list(range(250))
    assert handler.queue.sent == 250 and sample(env, "mixer_queue_depth") == 0
    assert handler.queue.offer(items(5)) == 0  # after close: counted, not queued
    assert handler.queue.dropped["shutdown"] == 5
    await handler.close()  # safe twice
    assert_accounted(handler, env)


async def test_close_counts_what_cannot_be_sent_by_the_deadline(build: Build, backend: Backend, env: Env) -> None:
    handler = await build("{senders: 2, batchSize: 10, batchTimeout: 1h, timeout: 1h, shutdownTimeout: 200ms}")
    backend.program(*[Reply(hang=True)] * 10)
    handler.queue.offer(items(45))
    await until(lambda: len(backend.calls) == 2)  # two batches in flight, hanging
    loop = asyncio.get_running_loop()
    closing = loop.time()
    await handler.close()  # returns at the deadline (pytest-timeout would catch a hang)
    assert loop.time() - closing >= 0.2 - 0.001 and backend.accepted == []
    assert handler.queue.sent == 0 and handler.queue.dropped["shutdown"] == 45
    assert sample(env, "mixer_queue_depth") == 0
    assert_accounted(handler, env)


async def test_close_without_start_counts_what_it_holds(env: Env) -> None:
    async def send(batch: list[int]) -> None:
        raise AssertionError("a queue never started sends nothing")

    queue: PushQueue[int] = PushQueue(send, DeliverySettings(), env, rng=random.Random(1))
    queue.offer([1, 2, 3])
    assert sample(env, "mixer_queue_depth") == 3
    await queue.close()
    await queue.close()
    assert queue.dropped["shutdown"] == 3 and queue.offered == 3
    assert sample(env, "mixer_dropped_instances_total", reason="shutdown") == 3
    assert sample(env, "mixer_queue_depth") == 0


async def test_room_and_refuse_count_as_an_offer_that_does_not_fit(env: Env) -> None:
    async def send(batch: list[int]) -> None:
        return None

    queue: PushQueue[int] = PushQueue(send, DeliverySettings(queue_size=5, batch_timeout=3600), env)
    assert queue.room() == 5
    assert queue.offer([1, 2, 3]) == 3
    assert queue.room() == 2
    queue.refuse(4)  # a handler built only what fits and refused the rest
    assert queue.offered == 7 and queue.dropped["queue_full"] == 4
    assert sample(env, "mixer_dropped_instances_total", reason="queue_full") == 4
    sized: PushQueue[str] = PushQueue(send, DeliverySettings(queue_bytes=10, batch_timeout=3600), env, size_of=len)
    sized.offer(["x" * 10])
    assert sized.room() == 0  # the byte budget is spent
    await queue.close()
    assert queue.room() == 0
    queue.refuse(1)
    assert queue.dropped["shutdown"] == 3 + 1  # what was queued, then the refused one
    assert queue.offered == queue.sent + sum(queue.dropped.values())
