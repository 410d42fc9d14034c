"""Mixer's own expression cases (tests/expr/testdata/mixer_cases.yaml), run against mixer.expr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mixer.attributes import ValueType, bag_from_json, value_to_json
from mixer.expr import EvaluationError, ExpressionError, compile_expression

_DATA = yaml.safe_load((Path(__file__).parent / "testdata" / "mixer_cases.yaml").read_text())
MANIFEST = {name: ValueType(kind) for name, kind in _DATA["manifest"].items()}
CASES: list[dict[str, Any]] = _DATA["cases"]


def test_every_case_says_what_it_expects() -> None:
    assert len(CASES) >= 70
    for case in CASES:
        outcomes = {"value", "error", "compile_error"} & set(case)
        assert len(outcomes) == 1, case
        assert ("type" in case) != ("compile_error" in case), case


@pytest.mark.parametrize("case", CASES, ids=[f"{i}:{c['expression']}" for i, c in enumerate(CASES)])
def test_mixer_case(case: dict[str, Any]) -> None:
    text = case["expression"]
    if "compile_error" in case:
        with pytest.raises(ExpressionError) as info:
            compile_expression(text, MANIFEST)
        assert case["compile_error"] in info.value.message
        return
    compiled = compile_expression(text, MANIFEST)
    assert compiled.type is ValueType(case["type"])
    bag = bag_from_json(case.get("bag", {}), MANIFEST)
    if "error" in case:
        with pytest.raises(EvaluationError) as failure:
            compiled.evaluate(bag)
        assert case["error"] in str(failure.value)
        return
    assert value_to_json(compiled.type, compiled.evaluate(bag)) == case["value"]
