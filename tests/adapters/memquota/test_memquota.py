"""memquota: fixed windows per dimension set, best effort, overrides, params errors."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from adapters.memquota import MemQuotaAdapter, MemQuotaHandler, WindowResolver, window_for
from mixer.sdk import OK, RESOURCE_EXHAUSTED, Env, Instance, ParamsError, QuotaArgs
from mixer.selfmetrics import SelfMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _handler(raw: dict, clock: Clock) -> MemQuotaHandler:
    adapter = MemQuotaAdapter()
    env = Env("quota.handler.ns", logging.getLogger("test"), SelfMetrics(), clock=clock)
    handler = adapter.build(adapter.parse_params(raw), env, {})
    assert isinstance(handler, MemQuotaHandler)
    return handler


def _instance(path: str = "/a", name: str = "requestcount.instance.istio-system") -> Instance:
    return Instance(name, "quota", {"dimensions": {"path": path}})


async def test_window_grants_up_to_max_then_resets() -> None:
    clock = Clock()
    handler = _handler({"quotas": [{"name": "requestcount", "maxAmount": 2, "validDuration": "10s"}]}, clock)
    results = [await handler.allocate_quota(_instance(), QuotaArgs(1)) for _ in range(3)]
    assert [r.granted_amount for r in results] == [1, 1, 0]
    assert [r.status_code for r in results] == [OK, OK, RESOURCE_EXHAUSTED]
    assert [r.remaining for r in results] == [1, 0, 0]
    assert results[0].limit == 2 and results[0].window == dt.timedelta(seconds=10)
    assert (await handler.allocate_quota(_instance("/b"), QuotaArgs(1))).granted_amount == 1  # own window
    clock.now += 10
    assert (await handler.allocate_quota(_instance(), QuotaArgs(1))).granted_amount == 1


async def test_best_effort_and_all_or_nothing() -> None:
    handler = _handler({"quotas": [{"name": "requestcount", "maxAmount": 3, "validDuration": "1m"}]}, Clock())
    assert (await handler.allocate_quota(_instance(), QuotaArgs(2))).granted_amount == 2
    assert (await handler.allocate_quota(_instance(), QuotaArgs(2))).granted_amount == 0
    assert (await handler.allocate_quota(_instance(), QuotaArgs(2, best_effort=True))).granted_amount == 1


async def test_overrides_and_unconfigured_quotas() -> None:
    raw = {"quotas": [{"name": "requestcount.istio-system", "maxAmount": 1, "validDuration": "1m",
                       "overrides": [{"dimensions": {"path": "/vip"}, "maxAmount": 5}]}]}
    handler = _handler(raw, Clock())
    granted = [(await handler.allocate_quota(_instance("/vip"), QuotaArgs(1))).granted_amount for _ in range(6)]
    assert granted == [1, 1, 1, 1, 1, 0]
    other = await handler.allocate_quota(_instance(name="other.instance.istio-system"), QuotaArgs(7))
    assert other.granted_amount == 7


def test_params_errors_name_every_problem() -> None:
    with pytest.raises(ParamsError) as caught:
        MemQuotaAdapter().parse_params({"quotas": [{"maxAmount": -1, "validDuration": "soon"}], "extra": 1})
    paths = [path for path, _ in caught.value.problems]
    assert paths == ["extra", "quotas[0].name", "quotas[0].maxAmount", "quotas[0].validDuration"]


def test_window_resolver_answers_as_window_for_and_stays_bounded() -> None:
    limits = MemQuotaAdapter().parse_params({"quotas": [
        {"name": "requestcount", "maxAmount": 5, "validDuration": "10s",
         "overrides": [{"dimensions": {"path": "/vip"}, "maxAmount": 50}]}]}).quotas
    by_name = {limit.name: limit for limit in limits}
    resolve = WindowResolver(by_name, capacity=3)
    instances = [_instance(f"/p{i}") for i in range(5)] + [_instance("/vip"), _instance(name="other.instance.ns")]
    for _ in range(2):  # the second pass answers from what the first kept (and from recomputing past capacity)
        assert [resolve(i) for i in instances] == [window_for(by_name, i) for i in instances]
    assert resolve(_instance("/vip")).max_amount == 50  # type: ignore[union-attr]
    assert resolve(_instance(name="other.instance.ns")) is None
    assert len(resolve._known) <= 3
    unhashable = Instance("requestcount.instance.istio-system", "quota", {"dimensions": {"path": ["a"]}})
    assert resolve(unhashable) == window_for(by_name, unhashable)
