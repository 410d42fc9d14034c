"""memquota: fixed windows per dimension set, best effort, overrides, params errors."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from adapters.memquota import MemQuotaAdapter, MemQuotaHandler
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
