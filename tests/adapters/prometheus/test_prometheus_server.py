"""The /metrics endpoint, served for real on a free loopback port."""

from __future__ import annotations

from typing import Any

import aiohttp

from mixer.sdk import MetricInstance
from mixer.processes import free_port

from .conftest import Build

PARAMS: dict[str, Any] = {
    "metrics": [{"name": "requests_total", "instance_name": "rc.instance.ns", "kind": "COUNTER", "label_names": ["app"]}]
}


async def test_serves_text_and_openmetrics(build: Build) -> None:
    port = free_port()
    handler = build({**PARAMS, "address": f"127.0.0.1:{port}"}, {"rc.instance.ns": ["app"]})
    await handler.start()
    try:
        handler.handle_metric([MetricInstance("rc.instance.ns", 1, ("web",))])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                text = await response.text()
            # what Prometheus 2.42 sends
            accept = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                      "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
            async with session.get(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept}) as response:
                assert response.headers["Content-Type"].startswith("application/openmetrics-text")
                om = await response.text()
        assert 'istio_requests_total{app="web"} 1.0' in text
        assert "mixer_reports_total" not in text or "# TYPE mixer_reports_total counter" in text
        assert "# TYPE mixer_dispatches_total counter" in text  # the mixer's own registry, same scrape
        assert 'istio_requests_total{app="web"} 1.0' in om and om.endswith("# EOF\n")
    finally:
        await handler.close()
        await handler.close()  # safe twice


async def test_ephemeral_port_is_reported(build: Build) -> None:
    handler = build({**PARAMS, "address": "127.0.0.1:0"}, {"rc.instance.ns": ["app"]})
    await handler.start()
    try:
        assert handler.server.port != 0
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{handler.server.port}/metrics") as response:
                assert response.status == 200
    finally:
        await handler.close()


async def test_close_without_start(build: Build) -> None:
    handler = build(PARAMS, {"rc.instance.ns": ["app"]})
    await handler.close()


async def test_busy_port_is_a_clear_error(build: Build) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        handler = build({**PARAMS, "address": f"127.0.0.1:{port}"}, {"rc.instance.ns": ["app"]})
        try:
            await handler.start()
        except OSError as err:
            assert f"127.0.0.1:{port}" in str(err)
        else:  # SO_REUSEPORT lets a second listener share only with a socket that also set it
            raise AssertionError("start() should have failed on a busy port")
        finally:
            await handler.close()
