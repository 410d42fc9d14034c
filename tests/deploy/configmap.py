"""deploy/kubernetes/configmap.yaml from mixer/defaultconfig/: ``python -m tests.deploy.configmap``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
HEADER = (
    "# mixer/defaultconfig/ as the pods' /etc/mixer (tests/deploy checks it matches; to refresh:\n"
    "#   python -m tests.deploy.configmap > deploy/kubernetes/configmap.yaml)\n"
)


class _Literal(str):
    pass


def _literal(dumper: yaml.Dumper, data: str) -> Any:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")


def render() -> str:
    yaml.add_representer(_Literal, _literal)
    files = sorted((REPO / "mixer" / "defaultconfig").glob("*.yaml"))
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mixer-config"},
           "data": {f.name: _Literal(f.read_text()) for f in files}}
    return HEADER + yaml.dump(doc, sort_keys=False, width=200)


if __name__ == "__main__":
    print(render(), end="")
