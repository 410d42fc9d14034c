"""The demo's mixer config: the default config with loopback addresses, plus the demo policy overlay."""

from __future__ import annotations

from pathlib import Path

import yaml

from mixer.config import DEFAULT_CONFIG_DIR

POLICY = Path(__file__).resolve().parent / "policy.yaml"


def write_config(dest: Path, metrics_address: str, policy: bool = True, otlp_endpoint: str = "") -> Path:
    """Copy the default config into ``dest`` with the prometheus handler on ``metrics_address`` and,
    when given, the otlp handler sending spans to ``otlp_endpoint`` (the demo's Jaeger)."""
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
    return dest
