"""What adapter unit tests share: an Env with its own metrics and a fixed clock."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from mixer.sdk import Adapter, Env, ParamsError
from mixer.selfmetrics import SelfMetrics


def env(handler_name: str = "h.handler.ns") -> Env:
    return Env(handler_name, logging.getLogger("test"), SelfMetrics(), clock=lambda: 1_700_000_000.0)


def expectations(path: Path) -> list[str]:
    """The ``# expect: path: message`` lines a testdata file begins with."""
    return [line.split(":", 1)[1].strip() for line in path.read_text().splitlines() if line.startswith("# expect:")]


def bad_params_files(testdata: Path) -> list[Path]:
    return sorted(testdata.glob("bad_*.yaml"))


def assert_names_every_problem(adapter: Adapter, path: Path) -> None:
    """``adapter`` refuses the params in ``path`` with exactly the problems its ``# expect:`` lines name."""
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    with pytest.raises(ParamsError) as err:
        adapter.parse_params(yaml.safe_load(path.read_text()))
    reported = [f"{where}: {message}" for where, message in err.value.problems]
    for want in expected:
        assert any(line.startswith(want) for line in reported), f"{want!r} not in {reported}"
    assert len(reported) == len(expected), reported
