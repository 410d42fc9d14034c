"""deploy/: the Kubernetes manifests against the Kubernetes schemas (the ``kubernetes-validate``
package ships them), the Compose file against the Compose specification's schema (vendored here, see
compose-spec.SOURCE), and every mixer command line in them against mixer's own argument parser.
No Docker engine or cluster runs here: what can be checked without one is checked."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from mixer.cli import build_parser

from .configmap import render

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.33.0"
KUSTOMIZE_KINDS = {"Kustomization", "Component"}


def documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def resources() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        for doc in documents(path):
            if isinstance(doc, dict) and "kind" in doc and doc["kind"] not in KUSTOMIZE_KINDS:
                found.append((path, doc))
    return found


def by_kind(kind: str, name: str) -> dict[str, Any]:
    return next(doc for _, doc in resources() if doc["kind"] == kind and doc["metadata"]["name"] == name)


@pytest.mark.parametrize(("path", "doc"), resources(), ids=lambda x: x.name if isinstance(x, Path) else x["kind"])
def test_every_manifest_is_valid_against_the_kubernetes_schema(path: Path, doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{path.relative_to(REPO)}: {doc['kind']} {doc['metadata']['name']}: {exc.message} at "
                    f"{'.'.join(map(str, exc.path))}")


def test_the_validator_does_refuse_a_bad_manifest() -> None:
    deployment = json.loads(json.dumps(by_kind("Deployment", "mixer")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = {"no": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = json.loads(json.dumps(by_kind("Deployment", "mixer")))
    deployment["spec"]["replicaz"] = 2  # strict: unknown fields are errors
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomizations_name_files_that_exist() -> None:
    for path in KUBERNETES.rglob("kustomization.yaml"):
        kustomization = documents(path)[0]
        for name in kustomization.get("resources", []) + [p["path"] for p in kustomization.get("patches", [])]:
            assert (path.parent / name).is_file(), f"{path.relative_to(REPO)} names missing {name}"
    base = documents(KUBERNETES / "kustomization.yaml")[0]
    assert sorted(base["resources"]) == sorted(
        p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml"
    ), "every manifest of the base is listed"


def test_the_configmap_is_the_default_config() -> None:
    assert (KUBERNETES / "configmap.yaml").read_text() == render(), (
        "deploy/kubernetes/configmap.yaml is stale: python -m tests.deploy.configmap > deploy/kubernetes/configmap.yaml"
    )


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return containers[0]


def test_the_mixer_deployment_probes_limits_scrapes_and_is_covered_by_pdb_and_hpa() -> None:
    deployment = by_kind("Deployment", "mixer")
    mixer = container(deployment)
    assert mixer["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert mixer["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= set(mixer["resources"]["requests"]) and mixer["resources"]["limits"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in mixer["ports"]}
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == ports["metrics"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert by_kind("PodDisruptionBudget", "mixer")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert by_kind("Service", "mixer")["spec"]["selector"].items() <= labels.items()
    target = by_kind("HorizontalPodAutoscaler", "mixer")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "mixer")
    volume = deployment["spec"]["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["name"] == by_kind("ConfigMap", "mixer-config")["metadata"]["name"]


def serve_args(args: list[str]) -> Any:
    """Parse as ``mixer`` would; argparse exits on an unknown flag or a bad value."""
    try:
        return build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"mixer refuses its command line: {args}")


def test_the_kafka_component_makes_a_front_door_and_workers() -> None:
    patch = documents(KUBERNETES / "kafka-workers" / "frontdoor-args.yaml")[0][0]
    assert patch["path"] == "/spec/template/spec/containers/0/args"
    assert "args" in container(by_kind("Deployment", "mixer"))  # what the patch replaces exists
    front = serve_args(patch["value"])
    worker = serve_args(container(by_kind("Deployment", "mixer-worker"))["args"])
    assert (front.mode, worker.mode) == ("frontdoor", "worker")
    assert front.kafka_bootstrap == worker.kafka_bootstrap and front.kafka_topic == worker.kafka_topic
    assert serve_args(container(by_kind("Deployment", "mixer"))["args"]).mode == "local"


# --- Compose ---------------------------------------------------------------------------------

COMPOSE = DEPLOY / "compose.yaml"


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def compose_validator() -> jsonschema.Draft201909Validator:
    schema = json.loads((Path(__file__).parent / "compose-spec.json").read_text())
    return jsonschema.Draft201909Validator(schema)


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in compose_validator().iter_errors(compose())]
    assert not errors, errors


def test_the_compose_schema_does_refuse_a_bad_file() -> None:
    bad = compose()
    bad["services"]["kafka"]["restart_policy"] = "always"
    assert list(compose_validator().iter_errors(bad))


def test_compose_has_the_whole_picture() -> None:
    services = compose()["services"]
    assert {"kafka", "redis", "jaeger", "prometheus", "grafana", "mixer-frontdoor", "mixer-worker",
            "frontend", "catalog", "reviews-v1", "reviews-v2", "traffic"} <= set(services)
    assert services["mixer-worker"]["deploy"]["replicas"] == 2
    front = serve_args(services["mixer-frontdoor"]["command"])
    worker = serve_args(services["mixer-worker"]["command"])
    assert (front.mode, worker.mode) == ("frontdoor", "worker")
    assert front.kafka_bootstrap == worker.kafka_bootstrap == "kafka:9092"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"compose mounts missing {source}"


def test_each_demo_container_runs_its_app_and_a_sidecar_pointed_at_the_front_door() -> None:
    services = compose()["services"]
    for name in ("frontend", "catalog", "reviews-v1", "reviews-v2"):
        script = services[name]["command"][0]
        app, _, sidecar = script.partition("&")
        assert shlex.split(app)[:3] == ["python", "-m", "mixer.demo.app"]
        words = shlex.split(sidecar)
        assert words[:2] == ["exec", "mixer"]
        args = serve_args(words[2:])
        assert args.mixer_grpc == "mixer-frontdoor:9091" and args.listen_host == "0.0.0.0" and args.run_envoy


def test_the_compose_prometheus_config_passes_promtool() -> None:
    result = subprocess.run(["promtool", "check", "config", str(DEPLOY / "compose" / "prometheus.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_runs_the_mixer_entry_point_as_a_non_root_user() -> None:
    lines = [line.split(None, 1) for line in (REPO / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    final_stage = lines[max(i for i, (word, _) in enumerate(lines) if word == "FROM"):]
    instructions = {word: rest for word, rest in final_stage}
    assert instructions["FROM"].startswith("python:3.11-slim")
    assert json.loads(instructions["ENTRYPOINT"]) == ["mixer"]
    user = instructions["USER"].split(":")[0]
    assert user not in ("root", "0")
    serve_args(json.loads(instructions["CMD"]))


# --- kustomize, rendered by kubectl (part of the machine image) without a cluster -------------


def kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (its built-in kustomize renders without a cluster) is part of the machine image"
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def kafka_overlay(tmp_path: Path) -> Path:
    """The overlay deploy/README.md shows, pointed at this repository's base and component."""
    base = os.path.relpath(KUBERNETES, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: istio-system\n"
        f"resources: [{base}]\ncomponents: [{base}/kafka-workers]\n"
    )
    return tmp_path


def test_the_rendered_base_is_valid_and_complete() -> None:
    rendered = kustomize(KUBERNETES)
    assert sorted(d["kind"] for d in rendered) == sorted(
        ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"])
    for doc in rendered:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == "istio-system"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "mixer"


def test_the_rendered_kafka_overlay_has_a_front_door_and_workers(tmp_path: Path) -> None:
    rendered = kustomize(kafka_overlay(tmp_path))
    for doc in rendered:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == "istio-system"
    deployments = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Deployment"}
    assert serve_args(container(deployments["mixer"])["args"]).mode == "frontdoor"
    assert serve_args(container(deployments["mixer-worker"])["args"]).mode == "worker"
    budgets = {d["metadata"]["name"] for d in rendered if d["kind"] == "PodDisruptionBudget"}
    assert budgets == {"mixer", "mixer-worker"}
