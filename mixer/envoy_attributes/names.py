"""Names the sidecar bootstrap (``proxy/``) writes and the Envoy mapping reads.

Both sides import them from here so they cannot drift apart. This module imports nothing: the
sidecar generator loads it without pulling in gRPC or protobuf.
"""

from __future__ import annotations

# Headers the sidecar generator stamps with the sending side's identity. Anyone who can reach a
# sidecar can set them, so the mapping reads them only when ``trust_peer_headers`` is on.
PEER_WORKLOAD_HEADER = "x-mixer-workload"
PEER_NAMESPACE_HEADER = "x-mixer-namespace"

# ext_authz context extension naming the quota instances a Check allocates (comma-separated).
QUOTAS_KEY = "mixer.quotas"

# Rate limit descriptor entry key naming the quota instances (comma-separated).
DESCRIPTOR_QUOTA_KEY = "quota"

# Node metadata keys (Istio's names) carrying a sidecar's own workload identity.
META_WORKLOAD = "WORKLOAD_NAME"
META_NAMESPACE = "NAMESPACE"
META_SERVICE = "SERVICE_NAME"
META_SERVICE_ACCOUNT = "SERVICE_ACCOUNT"
# Node metadata key of the workload's labels; ext_authz's ``bootstrap_metadata_labels_key`` names it
# too, so a Check carries the checking sidecar's labels (plus its name and namespace, see below).
META_LABELS = "labels"

# Identity keys the generator also puts among the labels (ext_authz sends only labels); they are
# taken back out before the labels become ``destination.labels``.
IDENTITY_LABELS = frozenset({META_WORKLOAD, META_NAMESPACE, META_SERVICE, META_SERVICE_ACCOUNT})
