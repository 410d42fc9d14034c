"""Param validation: one bad YAML per failure mode, each problem named with its path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adapters.prometheus import Kind, PrometheusAdapter
from adapters.prometheus.config import DEFAULT_BOUNDS, parse
from tests.adapters.support import assert_names_every_problem, bad_params_files

TESTDATA = Path(__file__).parent / "testdata"
DEFAULT_CONFIG = Path(__file__).parents[3] / "mixer" / "defaultconfig" / "prometheus.yaml"


@pytest.mark.parametrize("path", bad_params_files(TESTDATA), ids=lambda p: p.stem)
def test_bad_params_name_every_problem(path: Path) -> None:
    assert_names_every_problem(PrometheusAdapter(), path)


def test_istio_default_handler_parses_as_istio_had_it() -> None:
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert doc["kind"] == "handler" and doc["spec"]["compiledAdapter"] == "prometheus"
    params = parse(doc["spec"]["params"])
    by_name = {m.name: m for m in params.metrics}
    assert sorted(by_name) == sorted([
        "istio_requests_total", "istio_request_duration_seconds", "istio_request_bytes", "istio_response_bytes",
        "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total",
        "istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
    ])
    assert by_name["istio_requests_total"].kind is Kind.COUNTER
    assert by_name["istio_requests_total"].instance_name == "requestcount.instance.istio-system"
    assert by_name["istio_request_duration_seconds"].bounds == (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
    assert by_name["istio_request_bytes"].bounds == tuple(10.0**i for i in range(9))
    assert "response_flags" in by_name["istio_tcp_sent_bytes_total"].label_names
    assert params.expiry == 600 and params.expiry_check_interval == 300
    assert (params.host, params.port) == ("127.0.0.1", 42422)  # loopback unless told otherwise


def test_the_default_address_is_the_adapters_and_an_explicit_address_wins() -> None:
    from adapters.prometheus import PrometheusAdapter

    exposed = PrometheusAdapter(default_address="0.0.0.0:9999")
    assert (lambda p: (p.host, p.port))(exposed.parse_params({"metrics": []})) == ("0.0.0.0", 9999)
    explicit = exposed.parse_params({"metrics": [], "address": "127.0.0.1:1234"})
    assert (explicit.host, explicit.port) == ("127.0.0.1", 1234)


def test_snake_and_camel_spellings_agree() -> None:
    snake = parse({
        "metrics_expiration_policy": {"metrics_expiry_duration": "1m", "expiry_check_interval_duration": "5s"},
        "metrics": [{"name": "x", "instance_name": "x.instance.ns", "kind": "DISTRIBUTION", "label_names": ["a"],
                     "buckets": {"linear_buckets": {"num_finite_buckets": 2, "width": 5, "offset": 1}}}],
    })
    camel = parse({
        "metricsExpirationPolicy": {"metricsExpiryDuration": "1m", "expiryCheckIntervalDuration": "5s"},
        "metrics": [{"name": "x", "instanceName": "x.instance.ns", "kind": "DISTRIBUTION", "labelNames": ["a"],
                     "buckets": {"linearBuckets": {"numFiniteBuckets": 2, "width": 5, "offset": 1}}}],
    })
    assert snake == camel
    assert snake.metrics[0].bounds == (1.0, 6.0, 11.0)
    assert snake.expiry == 60 and snake.expiry_check_interval == 5


def test_defaults_namespace_and_name_cleaning() -> None:
    params = parse({"metrics": [
        {"instance_name": "requestcount.metric.istio-system", "kind": "COUNTER"},
        {"name": "latency/ms", "namespace": "my-app", "instance_name": "l.instance.ns", "kind": "DISTRIBUTION"},
    ]})
    count, latency = params.metrics
    # Mixer's cleaning: "." and "/" become "_", "-" goes; the old ".metric." spelling names the instance.
    assert count.name == "istio_requestcount_metric_istiosystem"
    assert count.instance_name == "requestcount.instance.istio-system"
    assert latency.name == "myapp_latency_ms"
    assert latency.bounds == DEFAULT_BOUNDS


def test_no_params_is_an_empty_handler() -> None:
    params = parse({})
    assert params.metrics == () and params.expiry is None
