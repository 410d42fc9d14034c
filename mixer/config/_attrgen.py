"""Mixer's Kubernetes attribute generation (``kubernetesenv`` + the ``kubernetes`` template): checked, not run.

Istio 1.4's shipped config runs a ``kubernetesenv`` handler on a ``kubernetes`` instance before every
report: it looks the pod behind ``source.ip``/``source.uid`` (and the destination's) up in the Kubernetes
API and fills ``source.workload.name``, ``source.labels``, ``source.owner``... Here each sidecar states its
own identity in its Envoy node metadata and the front doors put it into the bag (docs/envoy-attributes.md),
so that config is checked like any other (params, instance fields, attribute bindings) and loading says
once, in a warning, that the lookups are not made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mixer.attributes import ValueType

ADAPTER = "kubernetesenv"
OUT = "$out."  # how attribute bindings name the generator's outputs
# The bindings are compiled with ``$out.x`` read as the attribute ``_out.x`` (same length: columns hold).
OUT_ATTRIBUTE_PREFIX = "_out."

# kubernetesenv's params (Mixer's adapter/kubernetesenv/config/config.proto) and their YAML types.
PARAMS: Mapping[str, type] = {
    "kubeconfig_path": str,
    "cache_refresh_duration": str,
    "cluster_domain_name": str,
    "pod_label_for_app": str,
    "pod_label_for_version": str,
    "lookup_ingress_source_and_origin_values": bool,
    "fully_qualified_istio_ingress_gateway_name": str,
    "cluster_registries_namespace": str,
}

_S, _IP = ValueType.STRING, ValueType.IP_ADDRESS
_PER_SIDE: Mapping[str, ValueType] = {
    "pod_ip": _IP,
    "pod_uid": _S,
    "pod_name": _S,
    "labels": ValueType.STRING_MAP,
    "namespace": _S,
    "service_account_name": _S,
    "host_ip": _IP,
    "workload_uid": _S,
    "workload_name": _S,
    "workload_namespace": _S,
    "owner": _S,
}
# The template's outputs (its OutputTemplate), which ``attributeBindings`` may read as ``$out.<name>``.
OUTPUTS: Mapping[str, ValueType] = {
    **{f"source_{name}": kind for name, kind in _PER_SIDE.items()},
    **{f"destination_{name}": kind for name, kind in _PER_SIDE.items()},
    "destination_container_name": _S,
}


def param_problems(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for every unknown or wrongly typed kubernetesenv param."""
    problems = []
    for key, value in params.items():
        wanted = PARAMS.get(key)
        if wanted is None:
            problems.append((key, f"unknown field (known: {', '.join(PARAMS)})"))
        elif not isinstance(value, wanted) or (wanted is str and isinstance(value, bool)):
            problems.append((key, f"must be a {'boolean' if wanted is bool else 'string'}"))
    return problems


def outputs_manifest() -> dict[str, ValueType]:
    """The outputs as attributes, for type-checking binding expressions."""
    return {OUT_ATTRIBUTE_PREFIX + name: kind for name, kind in OUTPUTS.items()}


def warning(handler: str, actions: int) -> str:
    return (
        f"handler {handler} ({ADAPTER}) is recognised but not run: workload identity (workload, namespace, "
        f"labels, owner) comes from each sidecar's node metadata, not from Kubernetes pod lookups by IP; "
        f"its {actions} rule action(s) are skipped and bags keep the attributes the proxies sent"
    )
