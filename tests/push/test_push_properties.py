"""Properties: for any failure schedule, every offered item is sent or counted as dropped, exactly;
backoff delays stay within their jitter bounds."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from mixer.push import Backoff, DeliverySettings, PermanentError, PushQueue, RetryableError
from mixer.sdk import Env
from mixer.selfmetrics import SelfMetrics

OUTCOMES = st.one_of(
    st.just("ok"), st.just("retryable"), st.just("error"), st.just("permanent"), st.just("hang"),
    st.integers(min_value=0, max_value=8),  # a partial success rejecting that many
)


@settings(max_examples=60, deadline=None)
@given(
    schedule=st.lists(OUTCOMES, max_size=30),
    offers=st.lists(st.integers(min_value=0, max_value=40), max_size=12),
    queue_size=st.integers(min_value=1, max_value=60),
    batch_size=st.integers(min_value=1, max_value=20),
    senders=st.integers(min_value=1, max_value=3),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_offered_equals_sent_plus_dropped(
    schedule: list[str | int], offers: list[int], queue_size: int, batch_size: int, senders: int, seed: int
) -> None:
    delivery = DeliverySettings(
        queue_size=queue_size, batch_size=min(batch_size, queue_size), batch_timeout=0.001, senders=senders,
        timeout=0.05, retry_initial_interval=0.001, retry_max_interval=0.004, retry_max_elapsed=0.02,
        shutdown_timeout=0.05,
    )
    env = Env("prop.istio-system", logging.getLogger("test.push.prop"), SelfMetrics())
    acknowledged = 0

    async def send(batch: list[int]) -> None:
        nonlocal acknowledged
        outcome = schedule.pop(0) if schedule else "ok"
        if outcome == "hang":
            await asyncio.sleep(3600)
        if outcome == "retryable":
            raise RetryableError("busy", retry_after=0.002)
        if outcome == "error":
            raise ConnectionResetError("peer went away")
        if outcome == "permanent":
            raise PermanentError("no")
        if isinstance(outcome, int) and outcome:
            acknowledged += len(batch) - min(outcome, len(batch))
            raise PermanentError("partly", rejected=outcome)
        acknowledged += len(batch)

    async def run() -> PushQueue[int]:
        queue: PushQueue[int] = PushQueue(send, delivery, env, rng=random.Random(seed))
        await queue.start()
        for count in offers:
            queue.offer(list(range(count)))
            await asyncio.sleep(0)
        await queue.close()
        return queue

    queue = asyncio.run(run())
    assert queue.offered == sum(offers)
    assert queue.queued == 0 and queue.in_flight == 0
    assert queue.offered == queue.sent + sum(queue.dropped.values())
    assert queue.sent == acknowledged
    registry = env.metrics.registry
    assert (registry.get_sample_value("mixer_sent_instances_total", {"handler": env.handler_name}) or 0) == queue.sent
    for reason, count in queue.dropped.items():
        labels = {"handler": env.handler_name, "reason": reason}
        assert (registry.get_sample_value("mixer_dropped_instances_total", labels) or 0) == count


@given(
    initial=st.floats(min_value=0.001, max_value=5),
    multiplier=st.floats(min_value=1, max_value=4),
    jitter=st.floats(min_value=0, max_value=1),
    ceiling=st.floats(min_value=1, max_value=100),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_grows_to_its_ceiling_within_jitter(
    initial: float, multiplier: float, jitter: float, ceiling: float, seed: int
) -> None:
    delivery = DeliverySettings(
        retry_initial_interval=initial, retry_max_interval=max(ceiling, initial), retry_multiplier=multiplier,
        retry_jitter=jitter,
    )
    backoff = Backoff(delivery, random.Random(seed))
    interval = initial
    for _ in range(20):
        delay = backoff.next_delay()
        assert interval * (1 - jitter) - 1e-9 <= delay <= interval * (1 + jitter) + 1e-9
        interval = min(interval * multiplier, delivery.retry_max_interval)
    assert backoff.next_delay(retry_after=1000.0) == 1000.0  # the server's Retry-After is a floor


def test_settings_that_could_never_send_are_refused() -> None:
    async def send(batch: list[int]) -> None:
        return None

    env = Env("bad.istio-system", logging.getLogger("test.push.bad"), SelfMetrics())
    for bad in (DeliverySettings(batch_size=0), DeliverySettings(senders=0), DeliverySettings(queue_size=0)):
        with pytest.raises(ValueError):
            PushQueue(send, bad, env)
