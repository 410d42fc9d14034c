"""redisquota against a real Redis: fixed and rolling windows, best effort, overrides and
per-dimension counters, the grant's valid duration, and the same counts as memquota."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.memquota import MemQuotaAdapter
from adapters.redisquota import RedisQuotaAdapter, RedisQuotaHandler
from mixer.sdk import OK, RESOURCE_EXHAUSTED, Env, Handler, Instance, QuotaArgs
from tests.adapters.support import env
from tests.redisserver import RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def flush(server: RedisServer) -> None:
    client = redis.Redis(port=server.port)
    try:
        client.flushall()
    finally:
        client.close()


async def started(server: RedisServer, quotas: list[dict[str, Any]], clock: Clock) -> RedisQuotaHandler:
    adapter = RedisQuotaAdapter()
    handler_env = env()
    handler_env.clock = clock
    handler = adapter.build(adapter.parse_params({"redisServerUrl": server.url, "quotas": quotas}), handler_env, {})
    await handler.start()
    return handler


@pytest.fixture
async def fresh(redis_server: RedisServer) -> AsyncIterator[Callable[..., Any]]:
    flush(redis_server)
    handlers: list[Handler] = []

    async def make(quotas: list[dict[str, Any]], clock: Clock | None = None) -> RedisQuotaHandler:
        handler = await started(redis_server, quotas, clock or Clock())
        handlers.append(handler)
        return handler

    yield make
    for handler in handlers:
        await handler.close()


def quota(path: str = "/a", name: str = "requestcount.instance.istio-system") -> Instance:
    return Instance(name, "quota", {"dimensions": {"path": path}})


async def test_fixed_window_grants_up_to_max_then_resets(fresh: Callable[..., Any]) -> None:
    clock = Clock()
    handler = await fresh([{"name": "requestcount", "maxAmount": 2, "validDuration": "10s"}], clock)
    results = [await handler.allocate_quota(quota(), QuotaArgs(1)) for _ in range(3)]
    assert [r.granted_amount for r in results] == [1, 1, 0]
    assert [r.status_code for r in results] == [OK, OK, RESOURCE_EXHAUSTED]
    assert [r.remaining for r in results] == [1, 0, 0]
    assert results[2].message == "quota requestcount exhausted"
    assert results[0].limit == 2 and results[0].window == dt.timedelta(seconds=10)
    clock.now += 4
    later = await handler.allocate_quota(quota(), QuotaArgs(1))
    assert later.valid_duration == dt.timedelta(seconds=6)  # until the window resets
    clock.now += 6
    assert (await handler.allocate_quota(quota(), QuotaArgs(1))).granted_amount == 1


async def test_each_distinct_dimension_set_has_its_own_counter(fresh: Callable[..., Any]) -> None:
    # Istio #15543: Mixer's redisquota shared one counter across dimensions unless an override matched.
    handler = await fresh([{"name": "requestcount", "maxAmount": 1, "validDuration": "1m"}])
    assert (await handler.allocate_quota(quota("/a"), QuotaArgs(1))).granted_amount == 1
    assert (await handler.allocate_quota(quota("/b"), QuotaArgs(1))).granted_amount == 1
    assert (await handler.allocate_quota(quota("/a"), QuotaArgs(1))).granted_amount == 0


async def test_best_effort_takes_what_is_left_otherwise_all_or_nothing(fresh: Callable[..., Any]) -> None:
    handler = await fresh([{"name": "requestcount", "maxAmount": 3, "validDuration": "1m"}])
    assert (await handler.allocate_quota(quota(), QuotaArgs(2))).granted_amount == 2
    assert (await handler.allocate_quota(quota(), QuotaArgs(2))).granted_amount == 0
    assert (await handler.allocate_quota(quota(), QuotaArgs(2, best_effort=True))).granted_amount == 1


async def test_first_matching_override_sets_the_limit(fresh: Callable[..., Any]) -> None:
    handler = await fresh([{"name": "requestcount.istio-system", "maxAmount": 1, "validDuration": "1m",
                            "overrides": [{"dimensions": {"path": "/vip"}, "maxAmount": 5},
                                          {"dimensions": {"path": "/vip"}, "maxAmount": 100}]}])
    granted = [(await handler.allocate_quota(quota("/vip"), QuotaArgs(1))).granted_amount for _ in range(6)]
    assert granted == [1, 1, 1, 1, 1, 0]
    other = await handler.allocate_quota(quota(name="other.instance.istio-system"), QuotaArgs(7))
    assert other.granted_amount == 7  # not configured here: unlimited, no Redis call


async def test_rolling_window_frees_each_bucket_a_window_after_it_began(fresh: Callable[..., Any]) -> None:
    clock = Clock()
    handler = await fresh([{"name": "requestcount", "maxAmount": 3, "validDuration": "10s",
                            "bucketDuration": "1s", "rateLimitAlgorithm": "ROLLING_WINDOW"}], clock)
    assert (await handler.allocate_quota(quota(), QuotaArgs(2))).granted_amount == 2  # bucket at t=0
    clock.now += 5
    assert (await handler.allocate_quota(quota(), QuotaArgs(1))).granted_amount == 1  # bucket at t=5
    clock.now += 1
    full = await handler.allocate_quota(quota(), QuotaArgs(1))
    assert (full.granted_amount, full.status_code) == (0, RESOURCE_EXHAUSTED)
    assert full.valid_duration == dt.timedelta(seconds=4)  # the t=0 bucket leaves the window at t=10
    clock.now += 3.5
    assert (await handler.allocate_quota(quota(), QuotaArgs(1))).granted_amount == 0  # t=9.5: still full
    clock.now += 0.5
    freed = await handler.allocate_quota(quota(), QuotaArgs(2))  # t=10: the first two tokens are back
    assert (freed.granted_amount, freed.remaining) == (2, 0)
    # A fixed window would have reset everything at t=10; here the t=5 token still counts until t=15.
    clock.now += 4.9
    assert (await handler.allocate_quota(quota(), QuotaArgs(1))).granted_amount == 0
    clock.now += 0.1
    assert (await handler.allocate_quota(quota(), QuotaArgs(1))).granted_amount == 1


CONFIG = [{"name": "requestcount", "maxAmount": 4, "validDuration": "3s",
           "overrides": [{"dimensions": {"path": "/vip"}, "maxAmount": 9, "validDuration": "5s"},
                         {"dimensions": {"path": "/slow"}, "maxAmount": 1}]}]
STEP = st.tuples(
    st.sampled_from(["/a", "/b", "/vip", "/slow"]),
    st.integers(0, 5),  # amount
    st.booleans(),  # best effort
    st.integers(0, 2500),  # milliseconds before this allocation
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=40))
async def test_memquota_and_redisquota_count_the_same_for_the_same_config(
    redis_server: RedisServer, steps: list[tuple[str, int, bool, int]]
) -> None:
    flush(redis_server)
    clock = Clock()
    redis_handler = await started(redis_server, CONFIG, clock)
    mem_adapter = MemQuotaAdapter()
    mem_env: Env = env()
    mem_env.clock = clock
    mem_handler = mem_adapter.build(mem_adapter.parse_params({"quotas": CONFIG}), mem_env, {})
    try:
        for path, amount, best_effort, wait_ms in steps:
            clock.now += wait_ms / 1000
            args = QuotaArgs(amount, best_effort)
            want = await mem_handler.allocate_quota(quota(path), args)
            got = await redis_handler.allocate_quota(quota(path), args)
            assert (got.granted_amount, got.status_code, got.remaining, got.limit, got.window) == (
                want.granted_amount, want.status_code, want.remaining, want.limit, want.window)
            assert abs(got.valid_duration - want.valid_duration) <= dt.timedelta(milliseconds=1)
    finally:
        await redis_handler.close()


@pytest.mark.parametrize("algorithm", ["FIXED_WINDOW", "ROLLING_WINDOW"])
@pytest.mark.parametrize("best_effort", [False, True])
def test_the_command_packed_once_per_window_is_what_redis_py_would_send(algorithm: str, best_effort: bool) -> None:
    # The window's EVALSHA is packed once up to the varying arguments; it must stay byte for byte
    # the command redis-py packs from the same arguments.
    from redis.asyncio.connection import Connection

    from adapters.memquota import window_for
    from adapters.redisquota import _Window

    item: dict[str, Any] = {"name": "requestcount", "maxAmount": 7, "validDuration": "1h", "rateLimitAlgorithm": algorithm}
    if algorithm == "ROLLING_WINDOW":
        item["bucketDuration"] = "1m"
    params = RedisQuotaAdapter().parse_params({"redisServerUrl": "127.0.0.1:6379", "quotas": [item]})
    window = window_for({limit.name: limit for limit in params.quotas}, quota("/x"))
    assert window is not None
    kind, bucket = params.algorithms["requestcount"]
    target = _Window(window, kind, bucket)
    sha = hashlib.sha1(target.script.encode()).hexdigest()
    key = 'mixer:quota:["requestcount",[["path","/x"]]]'
    keys = [key] if algorithm == "FIXED_WINDOW" else [key + ":meta", key + ":buckets"]
    constant = [7, 3_600_000_000] + ([60_000_000] if algorithm == "ROLLING_WINDOW" else [])
    expected = b"".join(Connection().pack_command(
        "EVALSHA", sha, len(keys), *keys, *constant, 3, "1" if best_effort else "0", 1_700_000_000_123_456))
    assert bytes(target.command(3, best_effort, 1_700_000_000_123_456)) == expected
