"""Param validation: one bad YAML per failure mode, each problem named with its path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adapters.otlp import OtlpAdapter
from adapters.otlp.config import OtlpParams
from mixer.sdk import ParamsError

TESTDATA = Path(__file__).parent / "testdata"
DEFAULT_CONFIG = Path(__file__).parents[3] / "mixer" / "defaultconfig" / "istio-tracing.yaml"


def expectations(path: Path) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in path.read_text().splitlines() if line.startswith("# expect:")]


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("bad_*.yaml")), ids=lambda p: p.stem)
def test_bad_params_name_every_problem(path: Path) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    with pytest.raises(ParamsError) as err:
        OtlpAdapter().parse_params(yaml.safe_load(path.read_text()))
    reported = [f"{where}: {message}" for where, message in err.value.problems]
    for want in expected:
        assert any(line.startswith(want) for line in reported), f"{want!r} not in {reported}"
    assert len(reported) == len(expected), reported


def test_defaults_and_the_default_config() -> None:
    assert OtlpAdapter().parse_params({}) == OtlpParams()
    http = OtlpAdapter().parse_params({"protocol": "http"})
    assert http.endpoint == "http://127.0.0.1:4318"
    handler = next(doc for doc in yaml.safe_load_all(DEFAULT_CONFIG.read_text()) if doc["kind"] == "handler")
    params = OtlpAdapter().parse_params(handler["spec"]["params"])
    assert (params.protocol, params.endpoint, params.sampling_ratio) == ("grpc", "127.0.0.1:4317", 1.0)
