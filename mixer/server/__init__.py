"""Run the collector: load config, start the front doors, watch config, stop cleanly on signals."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mixer.config import ConfigError
from mixer.frontdoors import FrontDoor, FrontDoorOptions, GrpcListener, HttpListener, ServingRuntime, standard_doors
from mixer.kafka import KafkaOptions, KafkaPublisher, KafkaWorker, Mode, PublishingRuntime
from mixer.registry import AdapterRegistry
from mixer.runtime import Runtime

__all__ = ["ServeOptions", "serve"]

log = logging.getLogger("mixer.server")


@dataclass
class ServeOptions:
    config: Sequence[str]
    host: str = "127.0.0.1"
    port: int = 15014
    watch_interval: float = 2.0  # seconds between config change checks; 0 disables
    reuse_port: bool = False
    grpc: FrontDoorOptions | None = None  # the gRPC listener (ext_authz, ALS, RLS, native); None: off
    mode: Mode = Mode.LOCAL  # local dispatch, or Kafka between front doors and workers
    kafka: KafkaOptions = field(default_factory=KafkaOptions)
    registry: AdapterRegistry | None = None  # None: the installed adapters (embedding adds its own)


class _Part(Protocol):
    """A front door or a listener: started in order, stopped in reverse."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def config_signature(paths: Sequence[str]) -> tuple[tuple[str, float, int], ...]:
    """Cheap change detector: every YAML file's path, mtime and size."""
    entries = []
    for raw in paths:
        path = Path(raw)
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            try:
                stat = file.stat()
            except OSError:
                continue
            if file.suffix in (".yaml", ".yml"):
                entries.append((str(file), stat.st_mtime, stat.st_size))
    return tuple(entries)


async def watch_config(runtime: Runtime, paths: Sequence[str], interval: float) -> None:
    """Reload when files change. Whatever goes wrong while loading (a broken edit, an adapter that
    cannot start, a bug), the running config keeps serving, the error is logged and counted
    (``mixer_config_loads_total{result="error"}``), and the next edit is tried."""
    seen = config_signature(paths)
    while True:
        await asyncio.sleep(interval)
        try:
            current = config_signature(paths)
            if current == seen:
                continue
            seen = current
            await runtime.reload(paths)
            log.info("config reloaded from %s", ", ".join(paths))
            config_applied(runtime)
        except ConfigError as exc:
            log.error("config change rejected, keeping the running config:\n%s", exc)
        except Exception:  # counted by the runtime; the watcher must outlive any error
            log.exception("config change could not be applied, keeping the running config")


def config_applied(runtime: Runtime) -> None:
    """Log what loading the running config told besides errors (skipped documents, handlers not
    run) and export its size."""
    config = runtime.snapshot.config
    for note in config.notes:
        log.log(logging.WARNING if note.level == "warning" else logging.INFO, "%s", note)
    runtime.metrics.config_applied(len(config.rules), len(config.instances), len(config.handlers), len(config.manifest))


async def serve(options: ServeOptions, stop: asyncio.Event | None = None) -> None:
    """Load config, start every front door and listener, run until ``stop`` or a signal."""
    runtime = await Runtime.load(options.config, registry=options.registry)
    config_applied(runtime)
    door_options = options.grpc or FrontDoorOptions()
    parts: list[_Part] = []
    doors_runtime: ServingRuntime = runtime
    if options.mode is Mode.FRONTDOOR:
        publisher = KafkaPublisher(options.kafka, runtime.metrics)
        parts.append(publisher)  # started before the listeners, stopped after them
        doors_runtime = PublishingRuntime(runtime, publisher)
    doors: list[FrontDoor] = standard_doors(doors_runtime, door_options)
    if options.mode is Mode.WORKER:
        doors.append(KafkaWorker(runtime, options.kafka))
    parts += doors
    if options.grpc is not None:
        parts.append(GrpcListener(doors_runtime, doors, options.grpc))
    parts.append(HttpListener(doors_runtime, doors, options.host, options.port, options.reuse_port))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = (
        asyncio.create_task(watch_config(runtime, options.config, options.watch_interval))
        if options.watch_interval > 0
        else None
    )
    started: list[_Part] = []
    try:
        for part in parts:
            await part.start()
            started.append(part)
        for door in doors:
            log.debug("%s serves %s", door.name, ", ".join(door.serves()) or "nothing on the listeners")
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        for part in reversed(started):
            await part.stop()
        await runtime.close()
        log.info("stopped")
