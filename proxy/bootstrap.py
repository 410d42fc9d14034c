"""Sidecar specs and the Envoy bootstrap rendered from them (pure: a spec in, a dict out)."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

# The names the mixer's Envoy mapping reads; importing them loads no gRPC or protobuf.
from mixer.envoy_attributes.names import (
    AUTHZ_FILTER,
    CHECK_CONTEXT_HEADER,
    DESCRIPTOR_QUOTA_KEY,
    META_LABELS,
    META_NAMESPACE,
    META_POLICY,
    META_SERVICE,
    META_SERVICE_ACCOUNT,
    META_WORKLOAD,
    PEER_NAMESPACE_HEADER,
    PEER_WORKLOAD_HEADER,
    QUOTAS_KEY,
    RBAC_FILTER,
    TCP_AUTHZ_FILTER,
)

MIXER_CLUSTER = "mixer"

_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_OVERWRITE = "OVERWRITE_IF_EXISTS_OR_ADD"


@dataclass(frozen=True)
class Inbound:
    """Traffic to this workload: listen on ``port``, forward to the app on ``app_host:app_port``."""

    port: int
    app_port: int
    app_host: str = "127.0.0.1"


@dataclass(frozen=True)
class Outbound:
    """Traffic from this workload to service ``name`` (``svc`` or ``svc.ns``): listen on ``port``,
    forward to ``host:target_port`` (normally the callee's inbound sidecar)."""

    name: str
    port: int
    host: str
    target_port: int

    @property
    def service(self) -> str:
        return self.name.split(".", 1)[0]

    def namespace(self, default: str) -> str:
        return self.name.split(".", 1)[1] if "." in self.name else default


@dataclass(frozen=True)
class SidecarSpec:
    """Everything that makes one sidecar; ``render_bootstrap`` turns it into Envoy config."""

    workload: str
    namespace: str = "default"
    inbound: tuple[Inbound, ...] = ()
    outbound: tuple[Outbound, ...] = ()
    tcp_inbound: tuple[Inbound, ...] = ()  # plain TCP proxying, reported as TCP ALS entries
    tcp_outbound: tuple[Outbound, ...] = ()
    mixer_host: str = "127.0.0.1"
    mixer_port: int = 9091
    fail_open: bool = False  # ext_authz failure_mode_allow / RLS failure_mode_deny=false
    service: str = ""  # default: the workload name without a trailing -vN
    labels: Mapping[str, str] = field(default_factory=dict)  # default: app=<service>, version=vN if named
    service_account: str = ""
    quotas: tuple[str, ...] = ()  # quota instances every inbound request allocates through ext_authz
    rate_limits: tuple[str, ...] = ()  # quota instances inbound requests allocate through the RLS
    admin_port: int = 0  # 0: any free port (EnvoyProcess reads it back)
    listen_host: str = "127.0.0.1"
    check_timeout: str = "0.5s"
    tracing: bool = True
    log_flush_interval: str = "0.5s"
    # A long TCP connection is logged this often while open (Istio 1.4's Mixer filter reported TCP
    # every 10 s), besides once when its upstream connects and once when it closes.
    tcp_report_interval: str = "10s"
    # Access log entries buffered before a message is sent (or the flush interval passes): larger
    # batches cost the mixer less per entry. Envoy's default is 16 KiB (~40 HTTP entries).
    log_buffer_bytes: int = 16384
    # The mixer serves the inbound ext_authz and RBAC filters' config (ECDS): no Check where no rule
    # can fire, deny rules on workload identity enforced by Envoy. False: static ext_authz, a Check each.
    policy_discovery: bool = False
    # Nonzero: ext_authz asks the mixer over plain HTTP on mixer_host:check_http_port (``mixer serve
    # --check-http-port``), a cheaper round trip than gRPC but without addresses, times and certificates.
    check_http_port: int = 0

    @property
    def service_name(self) -> str:
        return self.service or re.sub(r"-v\d+$", "", self.workload)

    @property
    def service_host(self) -> str:
        return f"{self.service_name}.{self.namespace}.svc.cluster.local"

    def effective_labels(self) -> dict[str, str]:
        if self.labels:
            return dict(self.labels)
        labels = {"app": self.service_name}
        version = re.search(r"-(v\d+)$", self.workload)
        if version:
            labels["version"] = version.group(1)
        return labels


def parse_inbound(text: str) -> Inbound:
    """``PORT:APP_PORT`` or ``PORT:APP_HOST:APP_PORT``."""
    parts = text.split(":")
    try:
        if len(parts) == 2:
            return Inbound(int(parts[0]), int(parts[1]))
        if len(parts) == 3:
            return Inbound(int(parts[0]), int(parts[2]), parts[1])
    except ValueError:
        pass
    raise ValueError(f"--inbound {text!r}: expected PORT:APP_PORT or PORT:APP_HOST:APP_PORT")


def parse_outbound(text: str) -> Outbound:
    """``NAME=PORT:HOST:TARGET_PORT``."""
    name, sep, rest = text.partition("=")
    parts = rest.split(":")
    if sep and name and len(parts) == 3:
        try:
            return Outbound(name, int(parts[0]), parts[1], int(parts[2]))
        except ValueError:
            pass
    raise ValueError(f"--outbound {text!r}: expected NAME=PORT:HOST:TARGET_PORT")


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _static_cluster(name: str, host: str, port: int, http2: bool = False) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        # a host name (a container's or a Kubernetes Service's) is resolved by DNS and followed
        "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(host, port)}}]}],
        },
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
        # Every request's Check goes to the mixer: Envoy's default of 1024 pending would cap throughput.
        cluster["circuit_breakers"] = {
            "thresholds": [{"max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000}]
        }
    return cluster


def _grpc_service(spec: SidecarSpec, timeout: str | None = None) -> dict[str, Any]:
    service: dict[str, Any] = {"envoy_grpc": {"cluster_name": MIXER_CLUSTER}}
    if timeout:
        service["timeout"] = timeout
    return service


def _identity_headers(spec: SidecarSpec) -> list[dict[str, Any]]:
    """This workload's identity, stamped over anything the app or a client sent."""
    return [
        {"header": {"key": PEER_WORKLOAD_HEADER, "value": spec.workload}, "append_action": _OVERWRITE},
        {"header": {"key": PEER_NAMESPACE_HEADER, "value": spec.namespace}, "append_action": _OVERWRITE},
    ]


def _access_log(spec: SidecarSpec, direction: str, tags: Mapping[str, str]) -> dict[str, Any]:
    return {
        "name": "envoy.access_loggers.http_grpc",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
            "common_config": {
                # The mixer reads the reporter kind from the suffix (see docs/envoy-attributes.md).
                "log_name": f"{spec.workload}_{direction}",
                "transport_api_version": "V3",
                "grpc_service": _grpc_service(spec),
                "buffer_flush_interval": spec.log_flush_interval,
                "buffer_size_bytes": spec.log_buffer_bytes,
                "custom_tags": [{"tag": k, "literal": {"value": v}} for k, v in tags.items()],
            },
            # The request-tracing headers are what Istio's accesslog instance reads (requestId, ...).
            "additional_request_headers_to_log": [PEER_WORKLOAD_HEADER, PEER_NAMESPACE_HEADER, "content-type",
                                                  "x-request-id", "x-client-trace-id", "x-forwarded-for",
                                                  # W3C trace context: spans derived from the log join the caller's trace
                                                  "traceparent"],
            "additional_response_headers_to_log": [PEER_WORKLOAD_HEADER, PEER_NAMESPACE_HEADER, "content-type",
                                                   "grpc-status", "grpc-message"],
            "additional_response_trailers_to_log": ["grpc-status", "grpc-message"],
        },
    }


def _tcp_listener(spec: SidecarSpec, direction: str, port: int, cluster: str, tags: Mapping[str, str]) -> dict[str, Any]:
    """A tcp_proxy listener whose connections are logged to the mixer (TCP ALS entries).

    TCP carries no headers: the peer's workload is known only through mTLS, so these bags name
    the reporting side and, outbound, the destination service.
    """
    log = _access_log(spec, direction, tags)
    log["name"] = "envoy.access_loggers.tcp_grpc"
    log["typed_config"] = {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.TcpGrpcAccessLogConfig",
        "common_config": log["typed_config"]["common_config"],
    }
    # Inbound connections are checked first, with the connection's attributes; a denial closes it.
    # With served policy the mixer switches the check off where no rule can fire for a TCP connection.
    checks = [_tcp_check_filter(spec)] if direction == "inbound" else []
    return {
        "name": f"tcp_{direction}_{port}",
        "address": _address(spec.listen_host, port),
        "traffic_direction": direction.upper(),
        "filter_chains": [{"filters": [*checks, {
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": f"tcp_{direction}_{port}",
                "cluster": cluster,
                "access_log": [log],
                # Without these a connection is logged only when it closes: no
                # istio_tcp_connections_opened_total, and a long one's bytes only at the end.
                "access_log_options": {
                    "flush_access_log_on_connected": True,
                    "access_log_flush_interval": spec.tcp_report_interval,
                },
            },
        }]}],
    }


def _tcp_ext_authz_config(spec: SidecarSpec) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz",
        "stat_prefix": "tcp_ext_authz",
        "transport_api_version": "V3",
        "grpc_service": _grpc_service(spec, spec.check_timeout),
        "failure_mode_allow": spec.fail_open,
        "include_peer_certificate": True,
        "bootstrap_metadata_labels_key": META_LABELS,
    }


def _tcp_check_filter(spec: SidecarSpec) -> dict[str, Any]:
    """The network ext_authz filter, static or (``policy_discovery``) served by the mixer."""
    if spec.policy_discovery:
        return _served_filter(spec, TCP_AUTHZ_FILTER, _tcp_ext_authz_config(spec))
    return {"name": "envoy.filters.network.ext_authz", "typed_config": _tcp_ext_authz_config(spec)}


def _outbound_tags(spec: SidecarSpec, outbound: Outbound) -> dict[str, str]:
    namespace = outbound.namespace(spec.namespace)
    return {
        "destination.service.name": outbound.service,
        "destination.service.namespace": namespace,
        "destination.service.host": f"{outbound.service}.{namespace}.svc.cluster.local",
    }


# Access log tag telling the mixer this sidecar exports spans of its own, so it does not derive
# them from the access log too (mixer/defaultconfig/istio-tracing.yaml).
PROXY_TRACING_TAG = "context.proxy_tracing"


def _log_tags(spec: SidecarSpec, tags: Mapping[str, str]) -> dict[str, str]:
    """An HTTP listener's access log tags: ``tags``, and whether the sidecar traces."""
    return {**tags, PROXY_TRACING_TAG: "true"} if spec.tracing else dict(tags)


def _own_identity(spec: SidecarSpec, side: str) -> dict[str, str]:
    return {
        f"{side}.workload.name": spec.workload,
        f"{side}.workload.namespace": spec.namespace,
        f"{side}.labels": json.dumps(spec.effective_labels(), sort_keys=True),
    }


def _span_resource(spec: SidecarSpec, direction: str, tags: Mapping[str, str]) -> dict[str, str]:
    """The tracer's resource attributes besides ``service.name``: this workload's identity and
    ``tags``, named by attribute (the mixer types them by its manifest, as access log custom tags).
    They are the same on every span a listener's tracer exports, so Envoy sends them once per export
    (OpenTelemetry's resource) rather than on every span."""
    side = "destination" if direction == "inbound" else "source"
    return {**_own_identity(spec, side), **tags}


def _span_tags(direction: str) -> list[dict[str, Any]]:
    """What the tracer writes on each span besides Envoy's own tags: the peer's identity headers
    under their own names (read only by a mixer that trusts peer headers): the caller's request
    headers inbound, the callee's response headers outbound."""
    if direction == "inbound":
        return [{"tag": h, "request_header": {"name": h}} for h in (PEER_WORKLOAD_HEADER, PEER_NAMESPACE_HEADER)]
    return [{"tag": h, "value": f"%RESP({h})%"} for h in (PEER_WORKLOAD_HEADER, PEER_NAMESPACE_HEADER)]


_STATIC_RESOURCE = "envoy.tracers.opentelemetry.resource_detectors.static_config"


def _tracing(spec: SidecarSpec, direction: str, tags: Mapping[str, str]) -> dict[str, Any]:
    return {
        "random_sampling": {"value": 100},
        "custom_tags": _span_tags(direction),
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": _grpc_service(spec, "1s"),
                "service_name": spec.service_name,
                "resource_detectors": [{
                    "name": _STATIC_RESOURCE,
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.tracers.opentelemetry.resource_detectors"
                                 ".v3.StaticConfigResourceDetectorConfig",
                        "attributes": _span_resource(spec, direction, tags),
                    },
                }],
            },
        },
    }


def _router() -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }


def _check_extensions(spec: SidecarSpec) -> dict[str, str]:
    """The inbound ext_authz context extensions: fixed attributes of every Check, and its quotas."""
    extensions = {
        "destination.service.name": spec.service_name,
        "destination.service.namespace": spec.namespace,
        "destination.service.host": spec.service_host,
    }
    if spec.quotas:
        extensions[QUOTAS_KEY] = ",".join(spec.quotas)
    return extensions


CHECK_HTTP_CLUSTER = "mixer_check_http"


def _ext_authz_config(spec: SidecarSpec) -> dict[str, Any]:
    if spec.check_http_port:
        return _ext_authz_http_config(spec)
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "grpc_service": _grpc_service(spec, spec.check_timeout),
        "failure_mode_allow": spec.fail_open,
        "include_peer_certificate": True,
        # destination.labels (and WORKLOAD_NAME/NAMESPACE) from this node's metadata
        "bootstrap_metadata_labels_key": META_LABELS,
    }


def _ext_authz_http_config(spec: SidecarSpec) -> dict[str, Any]:
    """ext_authz's HTTP service: the request's method, path and headers, plus this listener's fixed
    Check inputs in one header that Envoy sets itself (see mixer/frontdoors/http_check.py)."""
    labels = {**spec.effective_labels(), META_WORKLOAD: spec.workload, META_NAMESPACE: spec.namespace}
    context = json.dumps({"labels": labels, "extensions": _check_extensions(spec)}, sort_keys=True,
                         separators=(",", ":"))
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "failure_mode_allow": spec.fail_open,
        "http_service": {
            "server_uri": {"uri": f"http://{spec.mixer_host}:{spec.check_http_port}", "cluster": CHECK_HTTP_CLUSTER,
                           "timeout": spec.check_timeout},
            "authorization_request": {
                "allowed_headers": {"patterns": [{"safe_regex": {"regex": ".*"}}]},
                "headers_to_add": [{"key": CHECK_CONTEXT_HEADER, "value": context}],
            },
        },
    }


def _served_filter(spec: SidecarSpec, name: str, default: dict[str, Any]) -> dict[str, Any]:
    """An HTTP or network filter whose config the mixer serves (ECDS); ``default`` runs until it answers."""
    return {
        "name": name,
        "config_discovery": {
            "config_source": {
                "resource_api_version": "V3",
                "api_config_source": {"api_type": "GRPC", "transport_api_version": "V3",
                                      "grpc_services": [_grpc_service(spec)]},
            },
            "default_config": default,
            "apply_default_config_without_warming": True,
            "type_urls": [default["@type"]],
        },
    }


def _check_filters(spec: SidecarSpec) -> list[dict[str, Any]]:
    """ext_authz, static or (``policy_discovery``) served with an RBAC filter before it."""
    if not spec.policy_discovery:
        return [{"name": "envoy.filters.http.ext_authz", "typed_config": _ext_authz_config(spec)}]
    no_rules = {"@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"}
    return [_served_filter(spec, RBAC_FILTER, no_rules), _served_filter(spec, AUTHZ_FILTER, _ext_authz_config(spec))]


def _inbound_listener(spec: SidecarSpec, inbound: Inbound) -> dict[str, Any]:
    cluster = f"inbound_{inbound.port}"
    extensions = _check_extensions(spec)
    route: dict[str, Any] = {"cluster": cluster}
    if spec.rate_limits:
        route["rate_limits"] = [
            {
                "actions": [
                    {"generic_key": {"descriptor_key": DESCRIPTOR_QUOTA_KEY, "descriptor_value": name}},
                    {"generic_key": {"descriptor_key": "destination.workload.name", "descriptor_value": spec.workload}},
                    {"request_headers": {"header_name": ":path", "descriptor_key": "request.path"}},
                ]
            }
            for name in spec.rate_limits
        ]
    hcm: dict[str, Any] = {
        "@type": _HCM,
        "stat_prefix": f"inbound_{inbound.port}",
        "generate_request_id": True,
        "access_log": [_access_log(spec, "inbound", _log_tags(spec, {}))],
        "http_filters": [
            *_check_filters(spec),
            {
                "name": "envoy.filters.http.ratelimit",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
                    "domain": "mixer",
                    "timeout": spec.check_timeout,
                    "failure_mode_deny": not spec.fail_open,
                    "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
                    "rate_limit_service": {"transport_api_version": "V3", "grpc_service": _grpc_service(spec)},
                },
            },
            _router(),
        ],
        "route_config": {
            "name": f"inbound_{inbound.port}",
            "response_headers_to_add": _identity_headers(spec),
            "virtual_hosts": [
                {
                    "name": "inbound",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": route,
                            "typed_per_filter_config": {
                                AUTHZ_FILTER if spec.policy_discovery else "envoy.filters.http.ext_authz": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
                                    "check_settings": {"context_extensions": extensions},
                                }
                            },
                        }
                    ],
                }
            ],
        },
    }
    own_service = {k: v for k, v in extensions.items() if k != QUOTAS_KEY}
    return _http_listener(spec, "INBOUND", inbound.port, hcm, own_service)


def _outbound_listener(spec: SidecarSpec, outbound: Outbound) -> dict[str, Any]:
    cluster = f"outbound_{outbound.port}_{outbound.service}"
    tags = _outbound_tags(spec, outbound)
    hcm: dict[str, Any] = {
        "@type": _HCM,
        "stat_prefix": f"outbound_{outbound.port}",
        "generate_request_id": True,
        "add_user_agent": True,  # x-envoy-downstream-service-cluster/-node, as Istio's sidecars send
        "access_log": [_access_log(spec, "outbound", _log_tags(spec, tags))],
        "http_filters": [_router()],
        "route_config": {
            "name": f"outbound_{outbound.port}",
            "request_headers_to_add": _identity_headers(spec),
            "virtual_hosts": [
                {"name": outbound.service, "domains": ["*"],
                 "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}
            ],
        },
    }
    return _http_listener(spec, "OUTBOUND", outbound.port, hcm, tags)


def _http_listener(
    spec: SidecarSpec, direction: str, port: int, hcm: dict[str, Any], resource_attributes: Mapping[str, str]
) -> dict[str, Any]:
    """A listener running ``hcm`` (with the tracer, its resource carrying ``resource_attributes``, when the spec asks for it)."""
    if spec.tracing:
        hcm["tracing"] = _tracing(spec, direction.lower(), resource_attributes)
    return {
        "name": f"{direction.lower()}_{port}",
        "address": _address(spec.listen_host, port),
        "traffic_direction": direction,
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
    }


def render_bootstrap(spec: SidecarSpec) -> dict[str, Any]:
    """The complete Envoy bootstrap for ``spec`` as a dict (``bootstrap_yaml`` for text)."""
    if not spec.workload:
        raise ValueError("a sidecar needs a workload name")
    labels = spec.effective_labels()
    metadata: dict[str, Any] = {
        META_WORKLOAD: spec.workload,
        META_NAMESPACE: spec.namespace,
        META_SERVICE: spec.service_name,
        # ext_authz copies these into destination.labels; the mixer strips the identity keys back out.
        META_LABELS: {**labels, META_WORKLOAD: spec.workload, META_NAMESPACE: spec.namespace,
                      META_SERVICE: spec.service_name},
    }
    if spec.service_account:
        metadata[META_SERVICE_ACCOUNT] = spec.service_account
    if spec.policy_discovery:  # what the mixer needs to serve this sidecar's check filters
        metadata[META_POLICY] = {"authz": _ext_authz_config(spec), "check_extensions": _check_extensions(spec)}
        if spec.tcp_inbound:
            metadata[META_POLICY]["tcp_authz"] = _tcp_ext_authz_config(spec)
    clusters = [_static_cluster(MIXER_CLUSTER, spec.mixer_host, spec.mixer_port, http2=True)]
    if spec.check_http_port:
        check_cluster = _static_cluster(CHECK_HTTP_CLUSTER, spec.mixer_host, spec.check_http_port)
        check_cluster["circuit_breakers"] = _static_cluster("", "", 0, http2=True)["circuit_breakers"]
        clusters.append(check_cluster)
    clusters += [_static_cluster(f"inbound_{i.port}", i.app_host, i.app_port) for i in spec.inbound + spec.tcp_inbound]
    clusters += [
        _static_cluster(f"outbound_{o.port}_{o.service}", o.host, o.target_port)
        for o in spec.outbound + spec.tcp_outbound
    ]
    listeners = [_inbound_listener(spec, i) for i in spec.inbound]
    listeners += [_outbound_listener(spec, o) for o in spec.outbound]
    listeners += [_tcp_listener(spec, "inbound", i.port, f"inbound_{i.port}", {}) for i in spec.tcp_inbound]
    listeners += [
        _tcp_listener(spec, "outbound", o.port, f"outbound_{o.port}_{o.service}", _outbound_tags(spec, o))
        for o in spec.tcp_outbound
    ]
    return {
        "node": {"id": f"{spec.workload}.{spec.namespace}", "cluster": spec.service_name, "metadata": metadata},
        "admin": {"address": _address("127.0.0.1", spec.admin_port)},
        "layered_runtime": {
            "layers": [
                {
                    "name": "static",
                    "static_layer": {
                        # The OTel tracer otherwise waits for 5 spans before exporting.
                        "tracing.opentelemetry.min_flush_spans": 200,
                        "tracing.opentelemetry.flush_interval_ms": 1000,
                    },
                },
                {"name": "admin", "admin_layer": {}},
            ]
        },
        "static_resources": {
            "listeners": listeners,
            "clusters": clusters,
        },
    }


def bootstrap_yaml(spec: SidecarSpec) -> str:
    """``render_bootstrap`` as YAML text, with a header naming the workload."""
    header = f"# Envoy sidecar for workload {spec.workload}.{spec.namespace}, generated by `mixer sidecar`.\n"
    return header + yaml.safe_dump(render_bootstrap(spec), sort_keys=False, default_flow_style=False)
