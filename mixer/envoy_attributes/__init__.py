"""Envoy messages (ext_authz CheckRequest, ALS entries, RLS descriptors) -> Istio attribute bags.

The table of what comes from where, and which sources are trusted, is ``docs/envoy-attributes.md``.
Functions here are pure: a protobuf message in, a ``Bag`` out; they never touch the runtime.

Modules: ``identity`` (workload identity and how far each source is trusted), ``access_log`` (ALS),
``check_request`` (ext_authz), ``rate_limit`` (RLS), ``values`` (addresses, times, typed text shared
by them) and ``names`` (header, metadata and extension names shared with the sidecar generator).
Importing the package does not import protobuf or gRPC.
"""

from __future__ import annotations

from mixer.envoy_attributes.access_log import (
    http_entry_bag,
    proxy_error_code,
    reporter_kind,
    stream_base_bag,
    tcp_entry_bag,
)
from mixer.envoy_attributes.check_request import (
    HEADER_ONLY_ATTRIBUTES,
    TCP_CHECK_VARYING,
    check_request_bag,
    http_check_bag,
    inbound_check_facts,
    inbound_tcp_check_facts,
)
from mixer.envoy_attributes.identity import MappingOptions, Workload, principal_from_uri, workload_from_node
from mixer.envoy_attributes.rate_limit import descriptor_bag
from mixer.envoy_attributes.values import quota_names

__all__ = [
    "HEADER_ONLY_ATTRIBUTES",
    "MappingOptions",
    "TCP_CHECK_VARYING",
    "Workload",
    "check_request_bag",
    "descriptor_bag",
    "http_check_bag",
    "http_entry_bag",
    "inbound_check_facts",
    "inbound_tcp_check_facts",
    "principal_from_uri",
    "proxy_error_code",
    "quota_names",
    "reporter_kind",
    "stream_base_bag",
    "tcp_entry_bag",
    "workload_from_node",
]
