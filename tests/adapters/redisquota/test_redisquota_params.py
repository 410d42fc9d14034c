"""redisquota params: one bad YAML per failure mode, each problem named with its path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from adapters.redisquota import Algorithm, RedisQuotaAdapter
from mixer.sdk import ParamsError

TESTDATA = Path(__file__).parent / "testdata"


def expectations(path: Path) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in path.read_text().splitlines() if line.startswith("# expect:")]


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("bad_*.yaml")), ids=lambda p: p.stem)
def test_bad_params_name_every_problem(path: Path) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    with pytest.raises(ParamsError) as err:
        RedisQuotaAdapter().parse_params(yaml.safe_load(path.read_text()))
    reported = [f"{where}: {message}" for where, message in err.value.problems]
    for want in expected:
        assert any(line.startswith(want) for line in reported), f"{want!r} not in {reported}"
    assert len(reported) == len(expected), reported


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
