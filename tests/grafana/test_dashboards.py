"""Each dashboard as Grafana would load it: model, ids, refIds, layout, datasources, variables."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import yaml

from .dashboards import (
    BUILTINS,
    DASHBOARDS,
    GRAFANA,
    label_values_query,
    load,
    panels,
    provisioned_datasource_uids,
    variable_query,
    variables_in,
)


def test_the_four_dashboards_exist_with_unique_uids() -> None:
    assert [p.name for p in DASHBOARDS] == ["mesh.json", "mixer.json", "service.json", "workload.json"]
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_model_fields(path: Path) -> None:
    dashboard = load(path)
    for key in ("uid", "title", "schemaVersion", "panels", "templating", "time"):
        assert key in dashboard, key
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 30
    assert len(dashboard["uid"]) <= 40  # Grafana's uid limit
    for panel in panels(dashboard):
        assert panel.get("type"), panel
        assert panel.get("title"), panel


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_panel_ids_and_ref_ids_are_unique(path: Path) -> None:
    ids = [panel["id"] for panel in panels(load(path))]
    assert len(ids) == len(set(ids)), ids
    for panel in panels(load(path)):
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), (panel["title"], refs)
        if panel["type"] != "row":
            assert refs, f"{panel['title']} has no query"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_grid_within_24_columns_and_not_overlapping(path: Path) -> None:
    boxes = []
    for panel in panels(load(path)):
        grid = panel["gridPos"]
        x, y, w, h = grid["x"], grid["y"], grid["w"], grid["h"]
        assert x >= 0 and y >= 0 and w >= 1 and h >= 1, (panel["title"], grid)
        assert x + w <= 24, (panel["title"], grid)
        boxes.append((panel["title"], x, y, w, h))
    for (a, ax, ay, aw, ah), (b, bx, by, bw, bh) in itertools.combinations(boxes, 2):
        overlap = ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah
        assert not overlap, f"{a!r} overlaps {b!r}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_datasource_is_the_provisioned_one(path: Path) -> None:
    known = provisioned_datasource_uids()
    dashboard = load(path)
    sources = [panel["datasource"] for panel in panels(dashboard) if "datasource" in panel]
    sources += [t["datasource"] for panel in panels(dashboard) for t in panel.get("targets", [])]
    sources += [v["datasource"] for v in dashboard["templating"]["list"]]
    assert sources
    for source in sources:
        assert source["type"] == "prometheus" and source["uid"] in known, source


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_queries_use_only_defined_variables(path: Path) -> None:
    dashboard = load(path)
    defined = {v["name"] for v in dashboard["templating"]["list"]} | set(BUILTINS)
    for variable in dashboard["templating"]["list"]:
        label_values_query(variable_query(variable))  # Grafana's Prometheus variable syntax
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            unknown = variables_in(target["expr"]) - defined
            assert not unknown, (panel["title"], unknown)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_a_zero_fallback_beside_grouped_series_matches_on_no_labels(path: Path) -> None:
    """``sum(...) by (x) or vector(0)`` adds a label-less 0 beside the real series; ``or on()`` does not."""
    for panel in panels(load(path)):
        for target in panel.get("targets", []):
            expr = target["expr"]
            if " by (" in expr and "vector(" in expr:
                assert re.search(r"or vector\(", expr) is None, (panel["title"], expr)
                assert "or on() vector(" in expr, (panel["title"], expr)


def test_the_service_dashboards_client_panels_are_reported_by_the_client() -> None:
    """Istio's "client" view of a service is what the callers' sidecars report: reporter="source"."""
    service = load(GRAFANA / "dashboards" / "service.json")
    client = [p for p in panels(service) if p["title"].lower().startswith("client") and p.get("targets")]
    assert client
    for panel in client:
        for target in panel["targets"]:
            assert 'reporter="source"' in target["expr"] and 'reporter="destination"' not in target["expr"]
    server = [p for p in panels(service) if p["title"].lower().startswith("server") and p.get("targets")]
    for panel in server:
        for target in panel["targets"]:
            assert 'reporter="source"' not in target["expr"], panel["title"]


@pytest.mark.parametrize("name", ["service", "workload"])
def test_tcp_only_services_and_workloads_can_be_chosen(name: str) -> None:
    dashboard = load(GRAFANA / "dashboards" / f"{name}.json")
    for variable in dashboard["templating"]["list"]:
        metric, _ = label_values_query(variable_query(variable))
        assert "istio_tcp_" in metric, (variable["name"], metric)


def test_template_variables_cover_namespace_service_and_workload() -> None:
    names = {v["name"] for path in DASHBOARDS for v in load(path)["templating"]["list"]}
    assert {"namespace", "service", "workload"} <= names


def test_mesh_table_has_latency_percentiles() -> None:
    mesh = load(GRAFANA / "dashboards" / "mesh.json")
    table = next(p for p in panels(mesh) if p["type"] == "table" and "workload" in p["title"].lower())
    exprs = " ".join(t["expr"] for t in table["targets"])
    for quantile in ("0.5", "0.9", "0.99"):
        assert f"histogram_quantile({quantile}," in exprs


def test_provisioning_files_parse() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "mixer.yaml").read_text())
    assert provider["apiVersion"] == 1 and provider["providers"][0]["type"] == "file"
    assert provider["providers"][0]["options"]["path"]
    assert provisioned_datasource_uids() == {"mixer-prometheus"}
