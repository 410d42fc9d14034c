"""Sidecar bootstraps: what they contain, that real Envoy accepts them, and the CLI that writes them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from proxy import Inbound, Outbound, SidecarSpec, parse_inbound, parse_outbound, render_bootstrap, validate_config
from proxy.cli import main as sidecar_main
from tests.proxy.support import ROOT

SPEC = SidecarSpec(
    workload="reviews-v2",
    namespace="shop",
    inbound=(Inbound(15006, 9080),),
    outbound=(Outbound("ratings", 15001, "127.0.0.1", 15007),),
    mixer_port=9191,
    quotas=("requestcount",),
    rate_limits=("ratelimit",),
)


def _hcm(bootstrap: dict, listener: int) -> dict:
    return bootstrap["static_resources"]["listeners"][listener]["filter_chains"][0]["filters"][0]["typed_config"]


def test_node_carries_workload_identity() -> None:
    node = render_bootstrap(SPEC)["node"]
    assert node["id"] == "reviews-v2.shop"
    assert node["cluster"] == "reviews"
    assert node["metadata"]["WORKLOAD_NAME"] == "reviews-v2"
    assert node["metadata"]["NAMESPACE"] == "shop"
    assert node["metadata"]["labels"] == {"app": "reviews", "version": "v2", "WORKLOAD_NAME": "reviews-v2",
                                          "NAMESPACE": "shop", "SERVICE_NAME": "reviews"}


def test_inbound_listener_checks_limits_and_logs_to_the_mixer() -> None:
    bootstrap = render_bootstrap(SPEC)
    hcm = _hcm(bootstrap, 0)
    filters = [f["name"] for f in hcm["http_filters"]]
    assert filters == ["envoy.filters.http.ext_authz", "envoy.filters.http.ratelimit", "envoy.filters.http.router"]
    assert hcm["http_filters"][0]["typed_config"]["failure_mode_allow"] is False
    assert hcm["http_filters"][1]["typed_config"]["failure_mode_deny"] is True
    log = hcm["access_log"][0]["typed_config"]["common_config"]
    assert log["log_name"] == "reviews-v2_inbound"
    assert log["grpc_service"]["envoy_grpc"]["cluster_name"] == "mixer"
    route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]
    extensions = route["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["check_settings"]["context_extensions"]
    assert extensions["mixer.quotas"] == "requestcount"
    assert extensions["destination.service.host"] == "reviews.shop.svc.cluster.local"
    assert route["route"]["rate_limits"][0]["actions"][0]["generic_key"]["descriptor_value"] == "ratelimit"
    assert hcm["tracing"]["provider"]["name"] == "envoy.tracers.opentelemetry"
    mixer = next(c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "mixer")
    endpoint = mixer["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert endpoint == {"address": "127.0.0.1", "port_value": 9191}


def test_outbound_listener_stamps_identity_and_names_the_service() -> None:
    hcm = _hcm(render_bootstrap(SPEC), 1)
    headers = {h["header"]["key"]: h["header"]["value"] for h in hcm["route_config"]["request_headers_to_add"]}
    assert headers == {"x-mixer-workload": "reviews-v2", "x-mixer-namespace": "shop"}
    log = hcm["access_log"][0]["typed_config"]["common_config"]
    assert log["log_name"] == "reviews-v2_outbound"
    tags = {t["tag"]: t["literal"]["value"] for t in log["custom_tags"]}
    assert tags["destination.service.name"] == "ratings"


def test_the_tracer_sends_the_sidecars_identity_as_its_resource_and_the_peers_on_each_span() -> None:
    bootstrap = render_bootstrap(SPEC)

    def resource_and_tags(listener: int) -> tuple[dict[str, str], list[str]]:
        tracing = _hcm(bootstrap, listener)["tracing"]
        detector = tracing["provider"]["typed_config"]["resource_detectors"][0]
        assert detector["name"] == "envoy.tracers.opentelemetry.resource_detectors.static_config"
        return detector["typed_config"]["attributes"], [t["tag"] for t in tracing["custom_tags"]]

    inbound, inbound_tags = resource_and_tags(0)
    assert inbound["destination.workload.name"] == "reviews-v2" and inbound["destination.workload.namespace"] == "shop"
    assert json.loads(inbound["destination.labels"])["app"] == "reviews"
    assert inbound["destination.service.host"] == "reviews.shop.svc.cluster.local"
    outbound, outbound_tags = resource_and_tags(1)
    assert outbound["source.workload.name"] == "reviews-v2" and outbound["destination.service.name"] == "ratings"
    assert "destination.workload.name" not in outbound  # the callee's: only its response headers say
    assert inbound_tags == outbound_tags == ["x-mixer-workload", "x-mixer-namespace"]


def test_fail_open_flips_both_filters() -> None:
    bootstrap = render_bootstrap(SidecarSpec(workload="x", inbound=(Inbound(1, 2),), fail_open=True))
    filters = _hcm(bootstrap, 0)["http_filters"]
    assert filters[0]["typed_config"]["failure_mode_allow"] is True
    assert filters[1]["typed_config"]["failure_mode_deny"] is False


def test_tcp_inbound_connections_are_checked_and_tcp_outbound_ones_are_not() -> None:
    spec = SidecarSpec(workload="db-v1", tcp_inbound=(Inbound(15010, 5432),),
                       tcp_outbound=(Outbound("cache", 15011, "127.0.0.1", 6379),), fail_open=True)
    listeners = {item["name"]: item for item in render_bootstrap(spec)["static_resources"]["listeners"]}
    inbound = [f["name"] for f in listeners["tcp_inbound_15010"]["filter_chains"][0]["filters"]]
    assert inbound == ["envoy.filters.network.ext_authz", "envoy.filters.network.tcp_proxy"]
    check = listeners["tcp_inbound_15010"]["filter_chains"][0]["filters"][0]["typed_config"]
    assert check["grpc_service"]["envoy_grpc"]["cluster_name"] == "mixer"
    assert check["failure_mode_allow"] is True and check["bootstrap_metadata_labels_key"] == "labels"
    outbound = [f["name"] for f in listeners["tcp_outbound_15011"]["filter_chains"][0]["filters"]]
    assert outbound == ["envoy.filters.network.tcp_proxy"]


def test_real_envoy_accepts_the_bootstrap(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    assert sidecar_main(["--workload", "reviews-v2", "--inbound", "15006:9080", "--outbound",
                         "ratings=15001:127.0.0.1:15007", "--quota", "requestcount", "--rate-limit", "rl",
                         "--fail-open", "--output", str(path)]) == 0
    validate_config(path)
    assert yaml.safe_load(path.read_text())["node"]["metadata"]["WORKLOAD_NAME"] == "reviews-v2"


def test_tcp_listeners_log_on_connect_and_periodically_and_envoy_accepts_them(tmp_path: Path) -> None:
    spec = SidecarSpec(workload="db-v1", tcp_inbound=(Inbound(15010, 3306),),
                       tcp_outbound=(Outbound("db", 15011, "127.0.0.1", 15010),), tcp_report_interval="5s")
    bootstrap = render_bootstrap(spec)
    tcp = [listener for listener in bootstrap["static_resources"]["listeners"] if listener["name"].startswith("tcp_")]
    assert len(tcp) == 2
    for listener in tcp:
        proxy = listener["filter_chains"][0]["filters"][-1]["typed_config"]  # inbound: after the check
        assert proxy["access_log_options"] == {"flush_access_log_on_connected": True,
                                               "access_log_flush_interval": "5s"}
    path = tmp_path / "tcp.yaml"
    path.write_text(yaml.safe_dump(bootstrap))
    validate_config(path)  # envoy --mode validate


def test_served_policy_declares_its_check_filters_and_states_their_inputs() -> None:
    bootstrap = render_bootstrap(SidecarSpec(workload="c-v1", inbound=(Inbound(1, 2),), quotas=("q",),
                                             policy_discovery=True))
    hcm = _hcm(bootstrap, 0)
    rbac, authz = hcm["http_filters"][:2]
    assert (rbac["name"], authz["name"]) == ("mixer.rbac", "mixer.authz")
    discovery = authz["config_discovery"]
    assert discovery["apply_default_config_without_warming"] is True  # checks from the first request
    assert discovery["default_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] == "mixer"
    assert discovery["config_source"]["api_config_source"]["grpc_services"][0]["envoy_grpc"]["cluster_name"] == "mixer"
    route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]
    assert "mixer.authz" in route["typed_per_filter_config"]
    stated = bootstrap["node"]["metadata"]["MIXER_POLICY"]
    assert stated["authz"] == discovery["default_config"]
    assert stated["check_extensions"]["mixer.quotas"] == "q"
    assert stated["check_extensions"] == route["typed_per_filter_config"]["mixer.authz"]["check_settings"][
        "context_extensions"]


def test_served_policy_serves_the_tcp_check_too(tmp_path: Path) -> None:
    spec = SidecarSpec(workload="db-v1", tcp_inbound=(Inbound(15010, 5432),), policy_discovery=True)
    bootstrap = render_bootstrap(spec)
    (listener,) = bootstrap["static_resources"]["listeners"]
    check, proxy = listener["filter_chains"][0]["filters"]
    assert (check["name"], proxy["name"]) == ("mixer.tcp_authz", "envoy.filters.network.tcp_proxy")
    default = check["config_discovery"]["default_config"]
    assert default["@type"].endswith("filters.network.ext_authz.v3.ExtAuthz")
    assert check["config_discovery"]["apply_default_config_without_warming"] is True  # checks until served
    assert bootstrap["node"]["metadata"]["MIXER_POLICY"]["tcp_authz"] == default
    path = tmp_path / "tcp.yaml"
    path.write_text(yaml.safe_dump(bootstrap))
    validate_config(path)  # envoy --mode validate: ECDS for a network filter


def test_http_check_sends_the_fixed_inputs_in_a_header() -> None:
    bootstrap = render_bootstrap(SidecarSpec(workload="c-v1", inbound=(Inbound(1, 2),), check_http_port=9092))
    config = _hcm(bootstrap, 0)["http_filters"][0]["typed_config"]
    service = config["http_service"]
    assert service["server_uri"]["uri"] == "http://127.0.0.1:9092"
    (header,) = service["authorization_request"]["headers_to_add"]
    assert header["key"] == "x-mixer-check-context"
    assert json.loads(header["value"]) == {
        "labels": {"app": "c", "version": "v1", "WORKLOAD_NAME": "c-v1", "NAMESPACE": "default"},
        "extensions": {"destination.service.name": "c", "destination.service.namespace": "default",
                       "destination.service.host": "c.default.svc.cluster.local"},
    }
    assert any(c["name"] == service["server_uri"]["cluster"] for c in bootstrap["static_resources"]["clusters"])


@pytest.mark.parametrize("flags", [["--policy-discovery"], ["--check-http-port", "9092"],
                                   ["--policy-discovery", "--check-http-port", "9092"]])
def test_real_envoy_accepts_served_policy_and_http_check_bootstraps(tmp_path: Path, flags: list[str]) -> None:
    path = tmp_path / "sidecar.yaml"
    assert sidecar_main(["--workload", "c-v1", "--inbound", "15006:9080", "--quota", "q", *flags,
                         "--output", str(path)]) == 0
    validate_config(path)


def test_envoy_rejects_a_broken_bootstrap(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("static_resources: {listeners: [{name: x}]}\n")
    with pytest.raises(ValueError, match="rejected"):
        validate_config(path)


def test_mixer_sidecar_subcommand_prints_yaml() -> None:
    out = subprocess.run([sys.executable, "-m", "mixer.cli", "sidecar", "--workload", "a-v1", "--inbound", "1:2"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert yaml.safe_load(out)["node"]["id"] == "a-v1.default"


@pytest.mark.parametrize("text", ["1", "a:b", "1:2:3:4"])
def test_bad_inbound(text: str) -> None:
    with pytest.raises(ValueError, match="--inbound"):
        parse_inbound(text)


def test_outbound_parsing() -> None:
    assert parse_outbound("ratings.shop=15001:127.0.0.1:9080") == Outbound("ratings.shop", 15001, "127.0.0.1", 9080)
    with pytest.raises(ValueError, match="--outbound"):
        parse_outbound("ratings=15001")


def test_in_a_container_listeners_bind_all_addresses_and_host_names_are_resolved(tmp_path: Path) -> None:
    """deploy/compose.yaml's sidecars: listeners on 0.0.0.0, the mixer and callees named by DNS."""
    path = tmp_path / "container.yaml"
    assert sidecar_main(["--workload", "catalog-v1", "--inbound", "9080:8080", "--outbound",
                         "reviews=15002:reviews-v1:9080", "--mixer-grpc", "mixer-frontdoor:9091",
                         "--listen-host", "0.0.0.0", "--output", str(path)]) == 0
    validate_config(path)
    bootstrap = yaml.safe_load(path.read_text())
    listeners = bootstrap["static_resources"]["listeners"]
    assert {listener["address"]["socket_address"]["address"] for listener in listeners} == {"0.0.0.0"}
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    by_host = {
        c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["address"]:
        c["type"] for c in clusters.values()
    }
    assert by_host["mixer-frontdoor"] == "STRICT_DNS" and by_host["reviews-v1"] == "STRICT_DNS"
    assert by_host["127.0.0.1"] == "STATIC"  # the app beside it
def test_generator_loads_no_grpc_or_protobuf() -> None:
    # proxy/ takes its header and metadata names from mixer.envoy_attributes.names; that must stay
    # cheap to import (the sidecar CLI never speaks gRPC itself).
    probe = (
        "import sys, proxy.bootstrap, mixer.envoy_attributes\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'envoy') "
        "or m.startswith('google.protobuf')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
