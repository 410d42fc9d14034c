"""Fixtures for the stackdriver adapter: the loopback fake MetricService, a fake clock, handlers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest

from adapters.stackdriver import StackdriverAdapter, StackdriverHandler
from adapters.stackdriver.fake import FakeMetricService
from mixer.sdk import Env, InstanceSchema
from mixer.selfmetrics import SelfMetrics

PROJECT = "test-project"
# Quick retries, so tests of outages take milliseconds rather than the production backoff.
FAST_DELIVERY = {"retry": {"initialInterval": "10ms", "maxInterval": "50ms", "maxElapsedTime": "20s"}, "timeout": "5s"}


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake() -> Iterator[FakeMetricService]:
    service = FakeMetricService()
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def env(clock: FakeClock) -> Env:
    return Env("stackdriver.istio-system", logging.getLogger("test.stackdriver"), SelfMetrics(), clock)


def schema(name: str, dims: Sequence[str], resource_type: str = "", resource_dims: Sequence[str] = ()) -> InstanceSchema:
    return InstanceSchema(name=name, template="metric", dimension_names=tuple(dims),
                          monitored_resource_type=resource_type, monitored_resource_dimension_names=tuple(resource_dims))


Build = Callable[..., StackdriverHandler]


@pytest.fixture
def build(env: Env, fake: FakeMetricService) -> Build:
    """A handler on the fake from {instance: metric info} and {instance: InstanceSchema}."""

    def _build(metric_info: Mapping[str, Any], instances: Mapping[str, InstanceSchema], **params: Any) -> StackdriverHandler:
        raw = {"projectId": PROJECT, "endpoint": fake.endpoint, "insecure": True, "pushInterval": "10s",
               "delivery": FAST_DELIVERY, "metricInfo": dict(metric_info), **params}
        adapter = StackdriverAdapter()
        handler = adapter.build(adapter.parse_params(raw), env, dict(instances))
        assert isinstance(handler, StackdriverHandler)
        return handler

    return _build


def dropped(env: Env, reason: str) -> float:
    value = env.metrics.registry.get_sample_value(
        "mixer_dropped_instances_total", {"handler": env.handler_name, "reason": reason}
    )
    return value or 0.0
