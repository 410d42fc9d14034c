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

# Served policy (``mixer sidecar --policy-discovery``): the inbound HTTP filters whose config the mixer
# serves over Envoy's extension config discovery (ECDS), by these resource (filter) names.
AUTHZ_FILTER = "mixer.authz"  # ext_authz: the sidecar's own config, switched off where no rule can fire
RBAC_FILTER = "mixer.rbac"  # Envoy's RBAC filter: the deny rules the proxy can enforce by itself
# The inbound TCP listeners' network ext_authz filter, served the same way: on where a check or quota
# rule can fire for a TCP connection to this workload, else switched off (no Check per connection).
TCP_AUTHZ_FILTER = "mixer.tcp_authz"
# Node metadata key under which such a sidecar states its ext_authz config ("authz", served back as is
# or switched off), its inbound context extensions ("check_extensions", fixed attributes of a Check)
# and, with TCP inbound listeners, its network ext_authz config ("tcp_authz").
META_POLICY = "MIXER_POLICY"

# ext_authz over HTTP (``mixer sidecar --check-http-port``): the header the sidecar adds to each
# authorization request with its fixed Check inputs, JSON {"labels": {...}, "extensions": {...}}.
# Envoy sets it itself (overriding any client header of that name).
CHECK_CONTEXT_HEADER = "x-mixer-check-context"
