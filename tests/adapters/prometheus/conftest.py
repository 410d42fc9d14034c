"""Fixtures for the prometheus adapter: a fake clock, an Env, and a handler builder."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from adapters.prometheus import PrometheusAdapter, PrometheusHandler
from mixer.sdk import Env, InstanceSchema
from mixer.selfmetrics import SelfMetrics


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def env(clock: FakeClock) -> Env:
    return Env("prometheus.istio-system", logging.getLogger("test.prometheus"), SelfMetrics(), clock)


Build = Callable[..., PrometheusHandler]


@pytest.fixture
def build(env: Env) -> Build:
    """Build a handler from raw params and {instance name: dimension names}."""

    def _build(params: Mapping[str, Any], instances: Mapping[str, Sequence[str]] | None = None) -> PrometheusHandler:
        adapter = PrometheusAdapter()
        schemas = {
            name: InstanceSchema(name=name, template="metric", dimension_names=tuple(dims))
            for name, dims in (instances or {}).items()
        }
        handler = adapter.build(adapter.parse_params(params), env, schemas)
        assert isinstance(handler, PrometheusHandler)
        return handler

    return _build


def dropped(env: Env, reason: str) -> float:
    value = env.metrics.registry.get_sample_value(
        "mixer_dropped_instances_total", {"handler": env.handler_name, "reason": reason}
    )
    return value or 0.0
