"""redisquota params: one bad YAML per failure mode, each problem named with its path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from adapters.redisquota import Algorithm, RedisQuotaAdapter
from tests.adapters.support import assert_names_every_problem, bad_params_files

TESTDATA = Path(__file__).parent / "testdata"


@pytest.mark.parametrize("path", bad_params_files(TESTDATA), ids=lambda p: p.stem)
def test_bad_params_name_every_problem(path: Path) -> None:
    assert_names_every_problem(RedisQuotaAdapter(), path)


def test_mixers_istio_14_sample_params_load() -> None:
    params = RedisQuotaAdapter().parse_params(yaml.safe_load("""
redisServerUrl: redis-release-master:6379
connectionPoolSize: 10
quotas:
- name: requestcountquota.instance.istio-system
  maxAmount: 500
  validDuration: 1s
  bucketDuration: 500ms
  rateLimitAlgorithm: ROLLING_WINDOW
  overrides:
  - dimensions: {destination: reviews}
    maxAmount: 1
"""))
    assert params.url == "redis://redis-release-master:6379" and params.pool_size == 10
    assert params.algorithms["requestcountquota.instance.istio-system"] == (
        Algorithm.ROLLING_WINDOW, dt.timedelta(milliseconds=500))
    assert params.quotas[0].overrides[0][1] == 1
