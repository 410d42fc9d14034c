"""Param validation: one bad YAML per failure mode, each problem named with its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.stdio import StdioAdapter
from adapters.stdio.config import DEFAULT_SEVERITY_LEVELS, parse
from tests.adapters.support import assert_names_every_problem, bad_params_files

TESTDATA = Path(__file__).parent / "testdata"


@pytest.mark.parametrize("path", bad_params_files(TESTDATA), ids=lambda p: p.stem)
def test_bad_params_name_every_problem(path: Path) -> None:
    assert_names_every_problem(StdioAdapter(), path)


def test_defaults_are_mixers() -> None:
    params = parse({})
    assert (params.log_stream, params.output_level, params.metric_level) == ("STDOUT", "INFO", "INFO")
    assert (params.max_megabytes_before_rotation, params.max_rotated_files, params.max_days_before_rotation) == (100, 1000, 30)
    assert params.severity_levels == DEFAULT_SEVERITY_LEVELS


def test_rotated_file_params_in_either_spelling() -> None:
    camel = parse({"logStream": "ROTATED_FILE", "outputPath": "/tmp/x.log", "maxMegabytesBeforeRotation": 5,
                   "maxRotatedFiles": 3, "maxDaysBeforeRotation": 0, "severityLevels": {"Notice": "warning"}})
    snake = parse({"log_stream": "rotated_file", "output_path": "/tmp/x.log", "max_megabytes_before_rotation": 5,
                   "max_rotated_files": 3, "max_days_before_rotation": 0, "severity_levels": {"Notice": "WARNING"}})
    assert camel == snake
    assert (camel.max_megabytes_before_rotation, camel.max_rotated_files, camel.max_days_before_rotation) == (5, 3, 0)
    assert camel.severity_levels["Notice"] == "WARNING" and camel.severity_levels["ERR"] == "ERROR"
