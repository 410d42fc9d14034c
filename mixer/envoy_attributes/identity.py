"""Who sent an Envoy message: workload identity, and how far each source of it is believed.

Trust order (``docs/envoy-attributes.md`` has the table):

1. the reporting sidecar's own bootstrap: ALS ``identifier.node`` metadata, and the ext_authz
   ``destination.labels`` copied from that metadata (``bootstrap_metadata_labels_key``);
2. literals written into the bootstrap (context extensions, custom tags; typed by the manifest);
3. the mTLS peer certificate's SPIFFE URI SAN, which names the other side verifiably;
4. only with ``MappingOptions.trust_peer_headers`` (``mixer serve --trust-peer-headers``): the
   ``x-mixer-workload``/``-namespace`` headers the other side's sidecar stamped. Anyone who can reach a
   sidecar can set them, so they never override what a trusted source already said.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mixer.attributes import Bag
from mixer.envoy_attributes.names import (
    IDENTITY_LABELS,
    META_LABELS,
    META_NAMESPACE,
    META_SERVICE,
    META_SERVICE_ACCOUNT,
    META_WORKLOAD,
    PEER_NAMESPACE_HEADER,
    PEER_WORKLOAD_HEADER,
)


@dataclass(frozen=True, slots=True)
class MappingOptions:
    """How much of what a request says about its sender is believed."""

    trust_peer_headers: bool = False  # opt-in: x-mixer-workload/-namespace name the peer (spoofable)


@dataclass(frozen=True, slots=True)
class Workload:
    """One side's identity as a sidecar's bootstrap states it."""

    name: str = ""
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    uid: str = ""
    service: str = ""
    principal: str = ""

    def attributes(self, side: str) -> Bag:
        """This identity as ``source.*`` or ``destination.*`` attributes (absent fields left out)."""
        bag: Bag = {}
        if self.name:
            bag[f"{side}.workload.name"] = self.name
            bag[f"{side}.name"] = self.name
        if self.namespace:
            bag[f"{side}.workload.namespace"] = self.namespace
            bag[f"{side}.namespace"] = self.namespace
        if self.labels:
            bag[f"{side}.labels"] = dict(self.labels)
        if self.uid:
            bag[f"{side}.uid"] = self.uid
        if self.principal:
            bag[f"{side}.principal"] = self.principal
        if side == "destination" and self.service:
            bag["destination.service.name"] = self.service
            if self.namespace:
                bag["destination.service.namespace"] = self.namespace
                bag["destination.service.host"] = f"{self.service}.{self.namespace}.svc.cluster.local"
        return bag


def workload_from_node(node: Any) -> Workload:
    """A sidecar's own identity from its envoy.config.core.v3.Node (bootstrap, so trusted)."""
    fields = node.metadata.fields
    meta = _struct_strings(node.metadata)
    labels: dict[str, str] = {}
    if META_LABELS in fields and fields[META_LABELS].WhichOneof("kind") == "struct_value":
        labels = {
            k: v for k, v in _struct_strings(fields[META_LABELS].struct_value).items() if k not in IDENTITY_LABELS
        }
    namespace = meta.get(META_NAMESPACE, "")
    account = meta.get(META_SERVICE_ACCOUNT, "")
    principal = f"cluster.local/ns/{namespace}/sa/{account}" if account and namespace else ""
    return Workload(
        name=meta.get(META_WORKLOAD, ""),
        namespace=namespace,
        labels=labels,
        uid=f"kubernetes://{node.id}" if node.id else "",
        service=meta.get(META_SERVICE, "") or node.cluster,
        principal=principal,
    )


def add_destination_from_labels(labels: Mapping[str, str], bag: Bag) -> None:
    """The checking sidecar's identity from ext_authz ``destination.labels`` (its bootstrap metadata)."""
    if name := labels.get(META_WORKLOAD):
        bag["destination.workload.name"] = name
        bag["destination.name"] = name
    if namespace := labels.get(META_NAMESPACE):
        bag["destination.workload.namespace"] = namespace
        bag["destination.namespace"] = namespace
    bag["destination.labels"] = {k: v for k, v in labels.items() if k not in IDENTITY_LABELS}


def principal_from_uri(uri: str) -> tuple[str, str]:
    """``spiffe://cluster.local/ns/NS/sa/SA`` -> (Istio principal ``cluster.local/ns/NS/sa/SA``, NS)."""
    principal = uri[len("spiffe://"):] if uri.startswith("spiffe://") else uri
    parts = principal.split("/")
    namespace = ""
    for i in range(len(parts) - 1):
        if parts[i] == "ns":
            namespace = parts[i + 1]
            break
    return principal, namespace


def add_peer_principal(bag: Bag, side: str, principal: str) -> None:
    """A certificate's SPIFFE URI as ``side.principal``, and its namespace unless one is known."""
    if not principal:
        return
    name, namespace = principal_from_uri(principal)
    bag[f"{side}.principal"] = name
    if namespace:
        bag.setdefault(f"{side}.namespace", namespace)
        bag.setdefault(f"{side}.workload.namespace", namespace)


def add_peer_from_headers(headers: Mapping[str, str], side: str, bag: Bag) -> None:
    """The identity headers the other side's sidecar stamped, as ``side.*`` (never overriding).

    Call only when ``MappingOptions.trust_peer_headers`` is on: the headers are spoofable.
    """
    name = headers.get(PEER_WORKLOAD_HEADER)
    if name:
        bag.setdefault(f"{side}.workload.name", name)
        bag.setdefault(f"{side}.name", name)
    namespace = headers.get(PEER_NAMESPACE_HEADER)
    if namespace:
        bag.setdefault(f"{side}.workload.namespace", namespace)
        bag.setdefault(f"{side}.namespace", namespace)


def _struct_strings(struct: Any) -> dict[str, str]:
    """The string-valued fields of a google.protobuf.Struct."""
    out: dict[str, str] = {}
    for key, value in struct.fields.items():
        if value.WhichOneof("kind") == "string_value":
            out[key] = value.string_value
    return out
