"""Config reloads: counters survive instance edits, any failure keeps the running config, parsing off the loop."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from pathlib import Path

import pytest

import mixer.runtime as runtime_module
from adapters.prometheus.handler import PrometheusHandler
from mixer.config import DEFAULT_CONFIG_DIR
from mixer.runtime import Runtime
from mixer.server import watch_config

BAG = {"context.protocol": "http", "source.workload.name": "a", "destination.workload.name": "b", "response.code": 200}


def _default_config(tmp_path: Path, port: int = 0) -> Path:
    config = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    prometheus = config / "prometheus.yaml"
    text = prometheus.read_text().replace("  params:\n", f"  params:\n    address: 127.0.0.1:{port}\n", 1)
    prometheus.write_text(text)
    return config


def _requests_total(runtime: Runtime) -> float:
    handler = runtime.snapshot.slots["prometheus.handler.istio-system"].handler
    assert isinstance(handler, PrometheusHandler)
    store = handler.stores["requestcount.instance.istio-system"]
    return sum(series.value for series in store.series.values())


def _failed_loads(runtime: Runtime) -> float:
    return runtime.metrics.registry.get_sample_value("mixer_config_loads_total", {"result": "error"}) or 0.0


async def test_editing_an_instance_keeps_the_prometheus_counters(tmp_path: Path) -> None:
    config = _default_config(tmp_path)
    runtime = await Runtime.load([str(config)])
    runtime.report([BAG, BAG])
    old_handler = runtime.snapshot.slots["prometheus.handler.istio-system"].handler
    telemetry = config / "istio-telemetry.yaml"
    # an instance edit: the request count's source_workload default changes, its dimension names do not
    telemetry.write_text(telemetry.read_text().replace('source.workload.name | "unknown"', 'source.workload.name | "nobody"', 1))
    await runtime.reload([str(config)])
    assert runtime.snapshot.slots["prometheus.handler.istio-system"].handler is not old_handler  # rebuilt
    runtime.report([BAG])
    assert _requests_total(runtime) == 3
    await runtime.close()


async def test_a_failing_reload_keeps_the_running_config_and_the_next_edit_applies(tmp_path: Path) -> None:
    config = _default_config(tmp_path)
    runtime = await Runtime.load([str(config)])
    watcher = asyncio.create_task(watch_config(runtime, [str(config)], 0.05))
    await asyncio.sleep(0)  # the watcher takes its baseline of the files before they change
    blocker = socket.socket()  # holds a port without SO_REUSEPORT: the new handler cannot listen there
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        prometheus = config / "prometheus.yaml"
        valid = prometheus.read_text()
        prometheus.write_text(valid.replace("127.0.0.1:0", f"127.0.0.1:{blocker.getsockname()[1]}"))
        for _ in range(200):
            if _failed_loads(runtime):
                break
            await asyncio.sleep(0.02)
        assert _failed_loads(runtime) == 1  # an OSError (address in use), not a ConfigError
        runtime.report([BAG])  # the old config still serves
        assert _requests_total(runtime) == 1
        assert not watcher.done()
        prometheus.write_text(valid.replace("requests_total", "requests_counted_total"))
        for _ in range(200):
            handler = runtime.snapshot.slots["prometheus.handler.istio-system"].handler
            assert isinstance(handler, PrometheusHandler)
            if handler.stores["requestcount.instance.istio-system"].info.name == "istio_requests_counted_total":
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the edit after a failed reload was never applied")
    finally:
        watcher.cancel()
        blocker.close()
        await runtime.close()


async def test_config_is_parsed_and_compiled_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    real = runtime_module.load_config

    def recording_load(*args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime_module, "load_config", recording_load)
    runtime = await Runtime.load([str(_default_config(tmp_path))])
    assert threads and threads[0] is not threading.main_thread()
    await runtime.close()
