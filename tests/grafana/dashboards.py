"""Reading dashboards as Grafana does: panels (rows flattened), targets, variables, PromQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# Grafana's built-in variables, resolved as it would for a short range on a 1 s scrape interval.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
# the selector may hold commas (``{__name__=~"a|b", x=~"$y"}``): the label is what follows the last one
_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<metric>.+),\s*)?(?P<label>\w+)\)$")


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def provisioned_datasource_uids() -> set[str]:
    uids = set()
    for path in (GRAFANA / "provisioning" / "datasources").glob("*.yaml"):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            uids.add(source["uid"])
    return uids


def variables_in(text: str) -> set[str]:
    return {next(g for g in match.groups() if g) for match in _VARIABLE.finditer(text)}


def substitute(text: str, values: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        return values[name] if name in values else match.group(0)

    return _VARIABLE.sub(one, text)


def label_values_query(query: str) -> tuple[str, str]:
    """``label_values(metric{sel}, label)`` -> (metric{sel}, label)."""
    match = _LABEL_VALUES.match(query.strip())
    if match is None:
        raise ValueError(f"not a label_values() query: {query!r}")
    return (match.group("metric") or "").strip(), match.group("label")


def variable_query(variable: Mapping[str, Any]) -> str:
    query = variable.get("query")
    return str(query.get("query") if isinstance(query, Mapping) else query)


_QUERY_RESULT = re.compile(r"^query_result\((?P<expr>.*)\)$", re.DOTALL)


def series_text(series: Mapping[str, Any]) -> str:
    """An instant-query series as Grafana's ``query_result()`` lists it: ``name{l="v",...} value ms``."""
    metric = series["metric"]
    labels = ",".join(f'{name}="{value}"' for name, value in metric.items() if name != "__name__")
    timestamp, value = series["value"]
    return f"{metric.get('__name__', '')}{{{labels}}} {value} {int(float(timestamp) * 1000)}"


def apply_regex(regex: str, texts: list[str]) -> list[str]:
    """A variable's ``regex`` (``/pattern/``) on option texts: the first group when it has one."""
    if not regex:
        return texts
    pattern = re.compile(regex[1 : regex.rindex("/")] if regex.startswith("/") else regex)
    out = []
    for text in texts:
        match = pattern.search(text)
        if match:
            out.append(match.group(1) if pattern.groups else match.group(0))
    return out


def all_value(options: list[str]) -> str:
    """What Grafana substitutes for "All" in a Prometheus query when ``allValue`` is unset."""
    return "(" + "|".join(re.escape(o).replace("\\", "\\\\") for o in options) + ")"
