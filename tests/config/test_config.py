"""Config loading: the shipped Istio config loads unchanged; each failure mode is reported precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixer.attributes import ValueType
from mixer.config import DEFAULT_CONFIG_DIR, ConfigError, compile_config, load_config
from mixer.registry import AdapterRegistry

TESTDATA = Path(__file__).parent / "testdata"
BAD_FILES = sorted(TESTDATA.glob("*.yaml"))

NOOP_PROMETHEUS = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: prometheus, namespace: istio-system}
spec: {compiledAdapter: noop}
"""


def expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: ...'"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_each_bad_file_reports_its_error_with_position(path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config([path])
    messages = [str(p).replace(str(TESTDATA) + "/", "") for p in caught.value.problems]
    assert any(m.startswith(expected(path)) for m in messages), messages


def test_there_is_one_bad_file_per_failure_mode() -> None:
    assert len(BAD_FILES) >= 15


def test_istio_telemetry_config_loads_unchanged() -> None:
    telemetry = DEFAULT_CONFIG_DIR / "istio-telemetry.yaml"
    config = compile_config(
        [(str(telemetry), telemetry.read_text()), ("h.yaml", NOOP_PROMETHEUS)], AdapterRegistry()
    )
    assert sorted(i.split(".")[0] for i in config.instances) == sorted(
        [
            "requestcount", "requestduration", "requestsize", "responsesize",
            "tcpbytesent", "tcpbytereceived", "tcpconnectionsopened", "tcpconnectionsclosed",
        ]
    )
    assert [r.name for r in config.rules] == [
        "promhttp.rule.istio-system",
        "promtcp.rule.istio-system",
        "promtcpconnectionopen.rule.istio-system",
        "promtcpconnectionclosed.rule.istio-system",
    ]
    duration = config.instances["requestduration.instance.istio-system"]
    assert duration.fields["value"].type is ValueType.DURATION
    assert len(duration.schema.dimension_names) == 21
    assert duration.schema.monitored_resource_type == "UNSPECIFIED"


def test_every_error_is_collected_not_just_the_first() -> None:
    sources = [(p.name, p.read_text()) for p in BAD_FILES if p.stem != "bad_yaml"]
    with pytest.raises(ConfigError) as caught:
        compile_config(sources, AdapterRegistry())
    files = {p.file for p in caught.value.problems}
    assert len(files) == len(sources)


def test_references_resolve_in_every_form(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: h, namespace: ns1}
spec: {compiledAdapter: noop}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: i, namespace: ns1}
spec: {compiledTemplate: checknothing}
---
apiVersion: policy.istio.io/v1beta1
kind: rule
metadata: {name: r, namespace: ns2}
spec:
  actions:
  - handler: h.ns1
    instances: [i.instance.ns1, i.ns1]
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: local, namespace: ns1}
spec:
  actions:
  - {handler: h, instances: [i, i.checknothing]}
"""
    )
    config = load_config([tmp_path])
    assert [len(r.actions[0].instances) for r in config.rules] == [2, 2]
    assert config.rules[0].actions[0].handler.name == "h.handler.ns1"


def test_attribute_manifest_extends_the_vocabulary(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        """
apiVersion: config.istio.io/v1alpha2
kind: attributemanifest
metadata: {name: extra}
spec:
  attributes:
    tenant.id: {valueType: INT64}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: i}
spec:
  compiledTemplate: metric
  params: {value: tenant.id + 1, dimensions: {}}
"""
    )
    config = load_config([tmp_path])
    assert config.manifest["tenant.id"] is ValueType.INT64
    assert config.instances["i.instance.istio-system"].fields["value"].evaluate({"tenant.id": 41}) == 42


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config([tmp_path / "absent.yaml"])


def test_deep_nesting_is_refused_even_after_expressions_raised_the_recursion_limit() -> None:
    from mixer.attributes import default_manifest
    from mixer.expr import compile_expression

    compile_expression("request.size > 1", default_manifest())  # raises the process's recursion limit
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config([TESTDATA / "bad_deep_nesting.yaml"])
