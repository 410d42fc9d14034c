"""`mixer serve`'s shutdown flushes push handlers before the final scrape, so that scrape counts
what they delivered: a real push handler against the loopback backend, a real prometheus endpoint."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from adapters.prometheus import PrometheusAdapter
from mixer.processes import free_port
from mixer.registry import AdapterRegistry
from mixer.runtime import Runtime
from mixer.server import shut_down

from .conftest import Backend, handler_config
from .httpjson import HttpJsonAdapter

REST = """
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: line, namespace: istio-system}
spec:
  compiledTemplate: logentry
  params: {severity: '"info"', variables: {path: request.path | ""}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: count, namespace: istio-system}
spec:
  compiledTemplate: metric
  params: {value: "1", dimensions: {}}
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: prom, namespace: istio-system}
spec:
  compiledAdapter: prometheus
  params:
    address: 127.0.0.1:%(port)d
    metrics: [{name: bags_total, namespace: test, instance_name: count.instance.istio-system, kind: COUNTER}]
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: all, namespace: istio-system}
spec:
  actions:
  - {handler: poster, instances: [line]}
  - {handler: prom, instances: [count]}
"""


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


async def test_the_final_scrape_sees_what_push_handlers_flushed(backend: Backend, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.yaml"
    # a batch waits a minute for more items: only the shutdown's flush sends it
    config.write_text(handler_config(backend.url, "{batchTimeout: 1m, batchSize: 1000}") + REST % {"port": port})
    registry = AdapterRegistry({"httpjson": HttpJsonAdapter(), "prometheus": PrometheusAdapter()})
    runtime = await Runtime.load([str(config)], registry=registry)
    runtime.report([{"request.path": f"/{i}"} for i in range(10)], "test")
    assert backend.accepted == []
    stopping = asyncio.create_task(shut_down(runtime, [], grace=20))
    text = ""
    while "test_bags_total" not in text:
        await asyncio.sleep(0.05)
        text = await asyncio.to_thread(_scrape, port)
    assert 'mixer_sent_instances_total{handler="poster.handler.istio-system"} 10.0' in text
    assert "test_bags_total 10.0" in text
    await asyncio.wait_for(stopping, 10)  # the scrape ended the wait
    assert [item["variables"]["path"] for item in backend.accepted] == [f"/{i}" for i in range(10)]
