"""Every panel query, variables resolved, against a real Prometheus that scraped the mixer fed by
Envoy sidecars (the demo's mesh, conftest.py) plus TCP reports through the native API: each must
parse and return data. The demo runs in Kafka mode (a front door and two workers on a real broker),
the one set-up where every panel, the Kafka row's included, has something to show; the other panels
read the same metrics in local mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mixer.demo.runner import Demo

from .dashboards import BUILTINS, DASHBOARDS, label_values_query, load, panels, substitute, variable_query


@pytest.mark.parametrize(("name", "variable", "value"), [
    ("service", "service", "ratings-db.storage.svc.cluster.local"),
    ("service", "namespace", "storage"),
    ("workload", "workload", "ratings-db-v1"),
])
def test_a_tcp_only_service_and_workload_are_offered(demo: Demo, name: str, variable: str, value: str) -> None:
    assert demo.prometheus is not None
    dashboard = load(Path(__file__).resolve().parents[2] / "grafana" / "dashboards" / f"{name}.json")
    values = dict(BUILTINS, namespace=".*")
    query = next(v for v in dashboard["templating"]["list"] if v["name"] == variable)
    match, label = label_values_query(substitute(variable_query(query), values))
    assert value in demo.prometheus.label_values(label, match)


def resolve_variables(demo: Demo, dashboard: dict[str, Any]) -> dict[str, str]:
    """Each variable's first value, as Grafana would offer it, earlier variables substituted."""
    assert demo.prometheus is not None
    values = dict(BUILTINS)
    for variable in dashboard["templating"]["list"]:
        match, label = label_values_query(substitute(variable_query(variable), values))
        options = demo.prometheus.label_values(label, match)
        assert options, f"variable {variable['name']} has no values ({variable_query(variable)})"
        values[variable["name"]] = sorted(options)[0]
    return values


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_query_returns_data(demo: Demo, path: Path) -> None:
    assert demo.prometheus is not None
    dashboard = load(path)
    values = resolve_variables(demo, dashboard)
    empty = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            expr = substitute(target["expr"], values)
            result = demo.prometheus.query(expr)  # raises on a parse error
            if not result:
                empty.append(f"{panel['title']} [{target['refId']}]: {expr}")
            labelled = [series for series in result if series["metric"]]
            # a grouped query's zero fallback must not add a label-less series beside the real ones
            assert not labelled or len(labelled) == len(result), (panel["title"], expr, result)
    assert not empty, "queries without data:\n" + "\n".join(empty)
