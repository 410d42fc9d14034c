"""The kafka adapter: params (one bad YAML per failure mode, loaded through config), and logentry,
metric and tracespan instances as JSON on a topic of the real broker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.kafka import KafkaHandler, KafkaParams
from mixer.config import ConfigError, compile_config, load_config
from mixer.thirdparty import KafkaBroker
from mixer.processes import free_port
from mixer.runtime import Runtime
from tests.kafka.support import new_topic, read_all

TESTDATA = Path(__file__).parent / "testdata"
BAD_FILES = sorted(TESTDATA.glob("bad_*.yaml"))


def expectations(path: Path) -> list[str]:
    return [line.removeprefix("# expect: ") for line in path.read_text().splitlines() if line.startswith("# expect: ")]


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_each_bad_params_file_reports_every_problem_with_position(path: Path) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} must begin with '# expect: file:line:col: path: message'"
    with pytest.raises(ConfigError) as caught:
        load_config([path])
    reported = [str(p).replace(str(TESTDATA) + "/", "") for p in caught.value.problems]
    for want in expected:
        assert any(line.startswith(want) for line in reported), f"{want!r} not in {reported}"
    assert len(reported) == len(expected), reported


def config(brokers: str, topic: str, delivery: str = "{batchTimeout: 50ms}") -> str:
    return f"""
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: sink}}
spec:
  compiledAdapter: kafka
  params: {{brokers: "{brokers}", topic: {topic}, delivery: {delivery}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: calls}}
spec:
  compiledTemplate: logentry
  params:
    severity: '"info"'
    timestamp: request.time
    variables: {{path: request.path | "", took: response.duration | "0ms", peer: source.ip | ip("0.0.0.0")}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: requests}}
spec:
  compiledTemplate: metric
  params: {{value: "1", dimensions: {{code: response.code | 0}}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: spans}}
spec:
  compiledTemplate: tracespan
  params:
    traceId: request.headers["x-b3-traceid"] | ""
    spanId: request.headers["x-b3-spanid"] | ""
    spanName: request.path | "/"
    startTime: request.time
    endTime: response.time
    httpStatusCode: response.code | 0
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: all}}
spec:
  actions: [{{handler: sink, instances: [calls, requests, spans]}}]
"""


BAG_JSON = {
    "request.time": "2026-01-02T03:04:05Z",
    "response.time": "2026-01-02T03:04:05.25Z",
    "response.duration": "250ms",
    "request.path": "/reviews/1",
    "response.code": 503,
    "source.ip": "10.0.0.7",
    "request.headers": {"x-b3-traceid": "abc", "x-b3-spanid": "def"},
}


async def test_instances_arrive_as_json_messages(kafka_broker: KafkaBroker) -> None:
    from mixer.attributes import bag_from_json

    topic = await new_topic(kafka_broker.bootstrap, partitions=2, prefix="sink")
    runtime = Runtime()
    await runtime.apply(compile_config([("sink.yaml", config(kafka_broker.bootstrap, topic))], runtime.registry))
    runtime.report([bag_from_json(BAG_JSON, runtime.manifest)] * 2)
    handler = runtime.snapshot.slots["sink.handler.istio-system"].handler
    assert isinstance(handler, KafkaHandler)
    await handler.queue.flush()
    assert handler.queue.sent == 6
    records = await read_all(kafka_broker.bootstrap, topic, expect=6)
    await runtime.close()
    by_template: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        body = orjson.loads(record.value)
        assert record.key == body["instance"].encode()
        by_template.setdefault(body["template"], []).append(body)
    assert {k: len(v) for k, v in by_template.items()} == {"logentry": 2, "metric": 2, "tracespan": 2}
    log = by_template["logentry"][0]
    assert log["instance"] == "calls.instance.istio-system"
    assert log["variables"] == {"path": "/reviews/1", "took": "250ms", "peer": "10.0.0.7"}
    assert log["timestamp"] == "2026-01-02T03:04:05Z"
    assert by_template["metric"][0] == {
        "instance": "requests.instance.istio-system", "template": "metric", "value": 1, "dimensions": {"code": 503},
    }
    span = by_template["tracespan"][0]
    assert (span["trace_id"], span["span_id"], span["http_status_code"]) == ("abc", "def", 503)
    assert span["end_time"] == "2026-01-02T03:04:05.250000Z"


async def test_a_broker_that_is_not_there_is_retried_then_counted_not_fatal() -> None:
    """Config loads although the broker is down (the producer connects on first send); a batch that
    cannot be sent is retried and, past its retry budget, counted as dropped."""
    from mixer.attributes import bag_from_json

    brokers = f"127.0.0.1:{free_port()}"
    delivery = "{batchTimeout: 0s, timeout: 1s, retry: {initialInterval: 100ms, maxElapsedTime: 2s}}"
    runtime = Runtime()
    await runtime.apply(compile_config([("sink.yaml", config(brokers, "nowhere", delivery))], runtime.registry))
    runtime.report([bag_from_json(BAG_JSON, runtime.manifest)])
    handler = runtime.snapshot.slots["sink.handler.istio-system"].handler
    assert isinstance(handler, KafkaHandler)
    async with asyncio.timeout(30):
        await handler.queue.flush()
    await runtime.close()
    assert handler.queue.sent == 0
    assert handler.queue.dropped["retries_exhausted"] == 3
    dropped = runtime.metrics.registry.get_sample_value(
        "mixer_dropped_instances_total", {"handler": "sink.handler.istio-system", "reason": "retries_exhausted"})
    assert dropped == 3


def test_params_defaults() -> None:
    from adapters.kafka import KafkaAdapter

    params = KafkaAdapter().parse_params({"brokers": "a:1,b:2", "topic": "t"})
    assert params == KafkaParams("a:1,b:2", "t")
