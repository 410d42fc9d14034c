"""The demo's mixer config: the default config with loopback addresses, plus the demo policy overlay,
and Istio's stackdriver metrics when an endpoint is given."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mixer.config import DEFAULT_CONFIG_DIR

POLICY = Path(__file__).resolve().parent / "policy.yaml"


def write_config(
    dest: Path,
    metrics_address: str,
    policy: bool = True,
    stackdriver: Mapping[str, Any] | None = None,
    otlp_endpoint: str = "",
) -> Path:
    """Copy the default config into ``dest`` with the prometheus handler on ``metrics_address`` and,
    when given, the otlp handler sending spans to ``otlp_endpoint`` (the demo's Jaeger); with
    ``stackdriver`` (params such as endpoint, insecure, projectId), Istio 1.4's stackdriver metrics
    too (``adapters/stackdriver/istio.yaml``)."""
    dest.mkdir(parents=True, exist_ok=True)
    for source in sorted(DEFAULT_CONFIG_DIR.glob("*.yaml")):
        docs = list(yaml.safe_load_all(source.read_text()))
        for doc in docs:
            if not doc or doc.get("kind") != "handler":
                continue
            adapter = doc["spec"].get("compiledAdapter")
            if adapter == "prometheus":
                doc["spec"]["params"]["address"] = metrics_address
            elif adapter == "otlp" and otlp_endpoint:
                doc["spec"]["params"]["endpoint"] = otlp_endpoint
        (dest / source.name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    if policy:
        (dest / "demo-policy.yaml").write_text(POLICY.read_text())
    if stackdriver is not None:
        from adapters.stackdriver import ISTIO_CONFIG

        docs = list(yaml.safe_load_all(ISTIO_CONFIG.read_text()))
        params = docs[0]["spec"]["params"]
        if stackdriver.get("insecure"):
            params.pop("appCredentials", None)  # a plaintext channel carries no credentials
        # No GCE metadata server here: name the demo's place and cluster for the k8s resources.
        params.update({"location": "demo-location", "clusterName": "mixer-demo", **stackdriver})
        (dest / "stackdriver.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return dest
