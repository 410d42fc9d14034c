"""Param validation: one bad YAML per failure mode, each problem named with its path (and, through
the config loader, its file, line and column)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from adapters.stackdriver import ISTIO_CONFIG, Kind, StackdriverAdapter, ValueType
from adapters.stackdriver.config import CUSTOM_PREFIX, DEFAULT_PUSH_INTERVAL, parse
from mixer.config import DEFAULT_CONFIG_DIR, ConfigError, compile_config
from mixer.registry import AdapterRegistry
from mixer.sdk import ParamsError
from tests.adapters.support import assert_names_every_problem, bad_params_files

TESTDATA = Path(__file__).parent / "testdata"


@pytest.mark.parametrize("path", bad_params_files(TESTDATA), ids=lambda p: p.stem)
def test_bad_params_name_every_problem(path: Path) -> None:
    assert_names_every_problem(StackdriverAdapter(), path)


def test_bad_params_are_reported_with_file_line_and_column() -> None:
    handler = """\
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: sd, namespace: istio-system}
spec:
  compiledAdapter: stackdriver
  params:
    projectId: my-project
    pushInterval: 1s
    metricInfo:
      requestcount.instance.istio-system:
        kind: COUNTER
        value: INT64
"""
    with pytest.raises(ConfigError) as err:
        compile_config([("sd.yaml", handler)], AdapterRegistry())
    lines = str(err.value).splitlines()
    assert any(line.startswith("sd.yaml:8:") and "pushInterval: must be at least 10s" in line for line in lines), lines
    assert any(line.startswith("sd.yaml:11:") and "kind: must be one of" in line for line in lines), lines


def test_istio_14_stackdriver_config_loads_with_the_default_config() -> None:
    sources = [(str(p), p.read_text()) for p in sorted(DEFAULT_CONFIG_DIR.glob("*.yaml"))]
    sources.append((str(ISTIO_CONFIG), ISTIO_CONFIG.read_text()))
    config = compile_config(sources, AdapterRegistry())
    params = config.handlers["stackdriver.handler.istio-system"].params
    by_instance = {m.instance_name: m for m in params.metrics}
    assert len(by_instance) == 12
    count = by_instance["server-request-count.instance.istio-system"]
    assert (count.metric_type, count.kind, count.value_type) == (
        "istio.io/service/server/request_count", Kind.CUMULATIVE, ValueType.INT64)
    latency = by_instance["client-roundtrip-latencies.instance.istio-system"]
    assert latency.metric_type == "istio.io/service/client/roundtrip_latencies"
    assert latency.value_type is ValueType.DISTRIBUTION and latency.unit == "ms"
    assert latency.buckets is not None and latency.buckets.kind == "exponential"
    assert latency.buckets.bounds == tuple(2.0**i for i in range(21))  # 20 finite buckets: 21 bounds
    assert params.push_interval == 10 and params.project_id == "my-project"
    schemas = [i.schema for i in config.instances.values() if i.name.startswith("server-")]
    assert {s.monitored_resource_type for s in schemas} == {"k8s_container"}


def test_mixer_numbers_names_and_spellings_agree() -> None:
    numbers = parse({"project_id": "p-1", "metric_info": {"x.instance.ns": {
        "kind": 3, "value": 5, "metric_type": "custom.googleapis.com/x",
        "buckets": {"linear_buckets": {"num_finite_buckets": 2, "width": 5, "offset": 1}}}}})
    names = parse({"projectId": "p-1", "metricInfo": {"x.instance.ns": {
        "kind": "cumulative", "value": "DISTRIBUTION", "metricType": "custom.googleapis.com/x",
        "buckets": {"linearBuckets": {"numFiniteBuckets": 2, "width": 5, "offset": 1}}}}})
    assert numbers == names
    buckets = numbers.metrics[0].buckets
    assert buckets is not None and buckets.bounds == (1.0, 6.0, 11.0)


def test_defaults() -> None:
    params = parse({"projectId": "my-project", "metricInfo": {"rc.instance.ns": {"kind": "GAUGE", "value": "DOUBLE"}}})
    assert params.push_interval == DEFAULT_PUSH_INTERVAL == 60
    assert params.endpoint == "" and not params.insecure and params.service_account_path == ""
    (info,) = params.metrics
    assert info.metric_type == CUSTOM_PREFIX + "rc.instance.ns"  # Mixer's default name
    assert info.label_names is None  # every dimension
    # Cloud Monitoring's limits shape the delivery defaults: one full request per batch, in order.
    assert (params.delivery.batch_size, params.delivery.batch_timeout, params.delivery.senders) == (200, 0.0, 1)


def test_delivery_block_is_the_shared_one() -> None:
    params = parse({"projectId": "my-project", "delivery": {"batchSize": 50, "senders": 2, "queueSize": 1000}})
    assert (params.delivery.batch_size, params.delivery.senders, params.delivery.queue_size) == (50, 2, 1000)
    with pytest.raises(ParamsError) as err:
        parse({"projectId": "my-project", "delivery": {"queueSize": 0}})
    assert [path for path, _ in err.value.problems] == ["delivery.queueSize"]


def test_service_account_file(tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"type": "service_account", "client_email": "m@p.iam.gserviceaccount.com",
                               "private_key": "-----BEGIN PRIVATE KEY-----\n...", "token_uri": "https://oauth2.example/token"}))
    assert parse({"projectId": "my-project", "serviceAccountPath": str(key)}).service_account_path == str(key)
    key.write_text(json.dumps({"type": "authorized_user"}))
    with pytest.raises(ParamsError, match="is not a service account key file"):
        parse({"projectId": "my-project", "serviceAccountPath": str(key)})


def test_mixers_older_instance_spelling() -> None:
    params = parse({"projectId": "my-project", "metricInfo": {"requestcount.metric.istio-system": {"kind": 3, "value": 2}}})
    assert params.metrics[0].instance_name == "requestcount.instance.istio-system"
