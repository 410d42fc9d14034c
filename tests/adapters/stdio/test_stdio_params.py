"""Param validation: one bad YAML per failure mode, each problem named with its path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adapters.stdio import StdioAdapter
from adapters.stdio.config import DEFAULT_SEVERITY_LEVELS, parse
from mixer.sdk import ParamsError

TESTDATA = Path(__file__).parent / "testdata"


def expectations(path: Path) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in path.read_text().splitlines() if line.startswith("# expect:")]


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("bad_*.yaml")), ids=lambda p: p.stem)
def test_bad_params_name_every_problem(path: Path) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    with pytest.raises(ParamsError) as err:
        StdioAdapter().parse_params(yaml.safe_load(path.read_text()))
    reported = [f"{where}: {message}" for where, message in err.value.problems]
    for want in expected:
        assert any(line.startswith(want) for line in reported), f"{want!r} not in {reported}"
    assert len(reported) == len(expected), reported


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
