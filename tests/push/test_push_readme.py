"""The README's push adapter is the code the tests run, and its delivery table states the real defaults."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from mixer.push import DeliverySettings, parse_delivery

README = Path(__file__).parents[2] / "README.md"
ADAPTER = Path(__file__).parent / "httpjson.py"


def test_the_readme_shows_the_tested_adapter_verbatim() -> None:
    code = ADAPTER.read_text()
    assert code[code.index("from __future__"):] in README.read_text()


def test_the_delivery_table_states_the_defaults() -> None:
    section = README.read_text().split("### The `delivery:` params of every push adapter")[1]
    rows = re.findall(r"^\| `([\w.]+)` \| (\S+)", section, re.MULTILINE)
    assert len(rows) == 13, rows
    for key, default in rows:
        value = yaml.safe_load(default.strip("`"))
        raw: dict[str, object] = {key: value}
        if key.startswith("retry."):
            raw = {"retry": {key.removeprefix("retry."): value}}
        assert parse_delivery(raw) == (DeliverySettings(), []), (key, default)
