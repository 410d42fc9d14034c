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


HANDLER = """apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: h}
spec: {compiledAdapter: noop}
"""
DESTINATION_RULE = """apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: istio-policy, namespace: istio-system}
spec: {host: istio-policy.istio-system.svc.cluster.local}
"""


def test_empty_documents_are_skipped_as_helm_and_kubectl_write_them() -> None:
    text = "---\n# only a comment\n---\n" + HANDLER + "---\n---\n"
    config = compile_config([("c.yaml", text)], AdapterRegistry())
    assert list(config.handlers) == ["h.handler.istio-system"]
    assert config.notes == []


def test_other_api_groups_are_skipped_with_one_info_note_each() -> None:
    text = HANDLER + "---\n" + DESTINATION_RULE + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n"
    config = compile_config([("c.yaml", text)], AdapterRegistry())
    assert list(config.handlers) == ["h.handler.istio-system"]
    assert [str(n) for n in config.notes] == [
        "c.yaml:6:1: info: skipped DestinationRule istio-policy.istio-system (networking.istio.io/v1alpha3): "
        "not Mixer config",
        "c.yaml:11:1: info: skipped ConfigMap cm (v1): not Mixer config",
    ]


def test_strict_makes_other_api_groups_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        compile_config([("c.yaml", HANDLER + "---\n" + DESTINATION_RULE)], AdapterRegistry(), strict=True)
    assert [str(p) for p in caught.value.problems] == [
        "c.yaml:6:13: apiVersion: DestinationRule istio-policy.istio-system (networking.istio.io/v1alpha3) "
        "is not Mixer config (strict)"
    ]


def test_a_mixer_kind_under_another_api_group_stays_an_error() -> None:
    with pytest.raises(ConfigError, match="apiVersion 'v9' is not one of"):
        compile_config([("c.yaml", "apiVersion: v9\nkind: handlr\nmetadata: {name: x}\nspec: {}\n")], AdapterRegistry())


KUBERNETESENV = """apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: kubernetesenv}
spec:
  compiledAdapter: kubernetesenv
  params: {cache_refresh_duration: 2m, pod_label_for_app: app}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: attributes}
spec:
  compiledTemplate: kubernetes
  params:
    source_uid: source.uid | ""
    source_ip: source.ip | ip("0.0.0.0")
    destination_port: destination.port | 0
  attributeBindings:
    source.workload.name: $out.source_workload_name | "unknown"
    source.labels: $out.source_labels | emptyStringMap()
    destination.ip: $out.destination_pod_ip | ip("0.0.0.0")
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: kubeattrgenrulerule}
spec:
  actions:
  - {handler: kubernetesenv, instances: [attributes]}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: both}
spec:
  actions:
  - {handler: kubernetesenv, instances: [attributes]}
  - {handler: h, instances: [requestcount]}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: requestcount}
spec: {compiledTemplate: metric, params: {value: "1"}}
---
""" + HANDLER


def test_kubernetesenv_is_checked_and_reported_once_not_dispatched() -> None:
    config = compile_config([("k.yaml", KUBERNETESENV)], AdapterRegistry())
    # The attribute generator's actions are not built: no handler, rules keep their other actions.
    assert list(config.handlers) == ["h.handler.istio-system"]
    assert {r.name: [a.handler.name for a in r.actions] for r in config.rules} == {
        "kubeattrgenrulerule.rule.istio-system": [],
        "both.rule.istio-system": ["h.handler.istio-system"],
    }
    assert config.instances["attributes.instance.istio-system"].template.name == "kubernetes"
    [note] = config.notes
    assert (note.level, note.file, note.line) == ("warning", "k.yaml", 5)
    assert "kubernetesenv.handler.istio-system (kubernetesenv) is recognised but not run" in note.message
    assert "node metadata" in note.message and "its 2 rule action(s) are skipped" in note.message


def test_rbac_documents_for_pilot_are_skipped_and_mixers_are_loaded() -> None:
    text = """apiVersion: rbac.istio.io/v1alpha1
kind: ClusterRbacConfig
metadata: {name: default}
spec: {mode: ON_WITH_INCLUSION, inclusion: {namespaces: [default]}}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: viewer, namespace: default}
spec:
  rules: [{services: ["*"], methods: [GET]}]
"""
    config = compile_config([("rbac.yaml", text)], AdapterRegistry())
    assert [role.name for role in config.rbac.roles] == ["viewer"]
    assert [str(n) for n in config.notes] == [
        "rbac.yaml:1:1: info: skipped ClusterRbacConfig default (rbac.istio.io/v1alpha1): not Mixer config"]
