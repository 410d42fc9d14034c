"""The shared ``delivery:`` params block, loaded through config with a real push adapter: one bad YAML
per failure mode, every problem reported with its file, line, column and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixer.config import ConfigError, compile_config, load_config
from mixer.push import DeliverySettings, parse_delivery
from mixer.registry import AdapterRegistry

from .conftest import handler_config
from .httpjson import HttpJsonAdapter, HttpJsonParams

TESTDATA = Path(__file__).parent / "testdata"
BAD_FILES = sorted(TESTDATA.glob("bad_*.yaml"))


def registry() -> AdapterRegistry:
    return AdapterRegistry({"httpjson": HttpJsonAdapter()})


def expectations(path: Path) -> list[str]:
    return [line.removeprefix("# expect: ") for line in path.read_text().splitlines() if line.startswith("# expect: ")]


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_each_bad_delivery_block_reports_every_problem_with_position(path: Path) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} must begin with '# expect: file:line:col: path: message'"
    with pytest.raises(ConfigError) as caught:
        load_config([path], registry())
    reported = [str(p).replace(str(TESTDATA) + "/", "") for p in caught.value.problems]
    for want in expected:
        assert any(line.startswith(want) for line in reported), f"{want!r} not in {reported}"
    assert len(reported) == len(expected), reported


def test_there_is_one_bad_file_per_failure_mode() -> None:
    assert len(BAD_FILES) >= 19


def load_params(delivery: str) -> HttpJsonParams:
    config = compile_config([("poster.yaml", handler_config("http://127.0.0.1:9/v1/logs", delivery))], registry())
    params = config.handlers["poster.handler.istio-system"].params
    assert isinstance(params, HttpJsonParams)
    return params


def test_every_key_is_read_from_config() -> None:
    params = load_params(
        "{queueSize: 100, queueBytes: 4096, batchSize: 50, batchTimeout: 200ms, senders: 4, timeout: 3s,"
        " shutdownTimeout: 10s, retry: {enabled: false, initialInterval: 1s, maxInterval: 1m, multiplier: 2,"
        " jitter: 0, maxElapsedTime: 0s}}"
    )
    assert params.delivery == DeliverySettings(
        queue_size=100, queue_bytes=4096, batch_size=50, batch_timeout=0.2, senders=4, timeout=3.0,
        shutdown_timeout=10.0, retry_enabled=False, retry_initial_interval=1.0, retry_max_interval=60.0,
        retry_multiplier=2.0, retry_jitter=0.0, retry_max_elapsed=0.0,
    )


def test_an_absent_or_empty_block_means_the_defaults() -> None:
    assert load_params("{}").delivery == DeliverySettings()
    assert parse_delivery(None) == (DeliverySettings(), [])
    settings = DeliverySettings()
    assert (settings.queue_size, settings.queue_bytes, settings.batch_size, settings.batch_timeout) == (
        10_000, 64 * 1024 * 1024, 512, 1.0)
    assert (settings.retry_initial_interval, settings.retry_max_interval, settings.retry_multiplier,
            settings.retry_jitter, settings.retry_max_elapsed, settings.shutdown_timeout) == (0.5, 30.0, 1.5, 0.5, 300.0, 5.0)


def test_problems_carry_the_callers_path() -> None:
    _, problems = parse_delivery({"senders": 0, "retry": {"jitter": 3}}, path="exporter.delivery")
    assert [where for where, _ in problems] == ["exporter.delivery.senders", "exporter.delivery.retry.jitter"]
