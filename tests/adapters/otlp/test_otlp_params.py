"""Param validation: one bad YAML per failure mode, each problem named with its path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adapters.otlp import OtlpAdapter
from adapters.otlp.config import OtlpParams
from tests.adapters.support import assert_names_every_problem, bad_params_files

TESTDATA = Path(__file__).parent / "testdata"
DEFAULT_CONFIG = Path(__file__).parents[3] / "mixer" / "defaultconfig" / "istio-tracing.yaml"


@pytest.mark.parametrize("path", bad_params_files(TESTDATA), ids=lambda p: p.stem)
def test_bad_params_name_every_problem(path: Path) -> None:
    assert_names_every_problem(OtlpAdapter(), path)


def test_defaults_and_the_default_config() -> None:
    assert OtlpAdapter().parse_params({}) == OtlpParams()
    http = OtlpAdapter().parse_params({"protocol": "http"})
    assert http.endpoint == "http://127.0.0.1:4318"
    handler = next(doc for doc in yaml.safe_load_all(DEFAULT_CONFIG.read_text()) if doc["kind"] == "handler")
    params = OtlpAdapter().parse_params(handler["spec"]["params"])
    assert (params.protocol, params.endpoint, params.sampling_ratio) == ("grpc", "127.0.0.1:4317", 1.0)
