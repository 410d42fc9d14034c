"""Run the collector: load config, start the front doors, watch config, stop cleanly on signals."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from adapters.prometheus import DEFAULT_ADDRESS as DEFAULT_METRICS_ADDRESS
from adapters.prometheus import PrometheusAdapter
from mixer.config import ConfigError
from mixer.frontdoors import FrontDoor, FrontDoorOptions, GrpcListener, HttpListener, ServingRuntime, standard_doors
from mixer.frontdoors.lanes import CHECK_SWITCH_INTERVAL, CheckThread
from mixer.kafka import KafkaOptions, KafkaPublisher, KafkaWorker, Mode, PublishingRuntime
from mixer.push import PushHandler
from mixer.registry import AdapterRegistry
from mixer.runtime import DEFAULT_CACHE_SIZE, Runtime
from mixer.sharedmetrics import SharedMetrics

__all__ = ["ServeOptions", "serve"]

log = logging.getLogger("mixer.server")


@dataclass
class ServeOptions:
    config: Sequence[str]
    host: str = "127.0.0.1"
    port: int = 15014
    watch_interval: float = 2.0  # seconds between config change checks; 0 disables
    reuse_port: bool = False
    doors: FrontDoorOptions = FrontDoorOptions()  # the doors, the gRPC listener and both listeners' limits
    grpc: bool = True  # the gRPC listener (ext_authz, ALS, RLS, native)
    metrics_address: str = DEFAULT_METRICS_ADDRESS  # /metrics of prometheus handlers whose params name none
    shutdown_grace: float = 10.0  # on SIGTERM: seconds for in-flight requests, then again for the final scrape
    metrics_dir: str | None = None  # ``--workers N``: where the workers' metrics meet (mixer.sharedmetrics)
    check_cache_size: int = DEFAULT_CACHE_SIZE  # check verdicts the mixer keeps; 0: none
    mode: Mode = Mode.LOCAL  # local dispatch, or Kafka between front doors and workers
    kafka: KafkaOptions = field(default_factory=KafkaOptions)
    registry: AdapterRegistry | None = None  # None: the installed adapters (embedding brings its own)


class _Part(Protocol):
    """A front door or a listener: started in order, stopped in reverse."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class _OnCheckLoop:
    """A part whose ``start`` and ``stop`` run on the check loop (it serves checks there)."""

    def __init__(self, part: _Part, checks: CheckThread) -> None:
        self.part = part
        self.checks = checks

    async def start(self) -> None:
        await self.checks.run(self.part.start())

    async def stop(self) -> None:
        await self.checks.run(self.part.stop())


def adapter_registry(options: ServeOptions) -> AdapterRegistry:
    """The installed adapters, the prometheus one listening where ``--metrics-address`` says by default."""
    prometheus = PrometheusAdapter(default_address=options.metrics_address, shared_dir=options.metrics_dir)
    return AdapterRegistry({"prometheus": prometheus})


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
        except Exception:  # the watcher must outlive any error
            log.exception("cannot read the config files' state")
            continue
        if current == seen:
            continue
        seen = current
        await reload_config(runtime, paths)


async def reload_config(runtime: Runtime, paths: Sequence[str]) -> None:
    """Load ``paths`` and swap the config in; on any error the running config keeps serving, the
    error is logged and counted. Used by the watcher and by SIGHUP."""
    try:
        await runtime.reload(paths)
        log.info("config reloaded from %s", ", ".join(paths))
        config_applied(runtime)
    except ConfigError as exc:
        log.error("config change rejected, keeping the running config:\n%s", exc)
    except Exception:  # counted by the runtime; the caller must outlive any error
        log.exception("config change could not be applied, keeping the running config")


def config_applied(runtime: Runtime) -> None:
    """Log what loading the running config told besides errors (skipped documents, handlers not
    run) and export its size."""
    config = runtime.snapshot.config
    for note in config.notes:
        log.log(logging.WARNING if note.level == "warning" else logging.INFO, "%s", note)
    runtime.metrics.config_applied(len(config.rules), len(config.instances), len(config.handlers), len(config.manifest))


async def serve(options: ServeOptions, stop: asyncio.Event | None = None) -> None:
    """Load config, start every front door and listener, run until ``stop`` or a signal.

    Checks are answered on a loop of their own (``mixer.frontdoors.lanes``): the gRPC listener and
    the HTTP ext_authz door run there; reports are dispatched on this one.
    """
    checks = CheckThread()
    checks.start()  # first: grpc.aio delivers its events through the first loop that uses it
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(CHECK_SWITCH_INTERVAL)
    try:
        await _serve(options, checks, stop)
    finally:
        sys.setswitchinterval(switch_interval)
        checks.stop()


async def _serve(options: ServeOptions, checks: CheckThread, stop: asyncio.Event | None) -> None:
    registry = options.registry or adapter_registry(options)
    runtime = Runtime(registry=registry, check_cache_size=options.check_cache_size)
    runtime.check_loop = checks.loop
    await runtime.reload(options.config)
    config_applied(runtime)
    parts: list[_Part] = []
    doors_runtime: ServingRuntime = runtime
    if options.mode is Mode.FRONTDOOR:
        publisher = KafkaPublisher(options.kafka, runtime.metrics)
        parts.append(publisher)  # started before the listeners, stopped after them
        doors_runtime = PublishingRuntime(runtime, publisher)
    doors: list[FrontDoor] = standard_doors(doors_runtime, options.doors)
    if options.mode is Mode.WORKER:
        doors.append(KafkaWorker(runtime, options.kafka))
    loop = asyncio.get_running_loop()
    parts += [_OnCheckLoop(door, checks) if door.on_check_loop else door for door in doors]
    grace = options.shutdown_grace
    if options.grpc:
        listener = GrpcListener(doors_runtime, doors, options.doors, grace=grace, report_loop=loop)
        parts.append(_OnCheckLoop(listener, checks))
    shared = SharedMetrics(options.metrics_dir, "self") if options.metrics_dir else None
    parts.append(
        HttpListener(
            doors_runtime, doors, options.host, options.port, options.reuse_port, options.doors.limits, grace, shared
        )
    )
    stop = stop or asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[None]] = set()  # referenced until done (the loop keeps weak refs)

    def reload_on_sighup() -> None:
        log.info("SIGHUP: reloading the config")
        task = asyncio.create_task(reload_config(runtime, options.config))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_on_sighup)
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
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await shut_down(runtime, reversed(started), options.shutdown_grace)


async def shut_down(runtime: Runtime, parts: Iterable[_Part], grace: float) -> None:
    """Stop accepting and answer what is in flight (every accepted bag is dispatched by then),
    flush the push handlers, keep the /metrics endpoints up until they have been scraped once
    more, or ``grace`` seconds, then close every handler."""
    log.info("stopping: answering requests in flight (at most %ss)", grace)
    for part in parts:
        await part.stop()  # the listeners were given the grace; the HTTP one goes first, then gRPC
    for slot in list(runtime.snapshot.slots.values()):
        if isinstance(slot.handler, PushHandler):
            await slot.handler.close()  # drains its queue (delivery.shutdownTimeout); close is safe twice
    metrics = runtime.metrics
    if metrics.scrape_endpoints:
        log.info("stopping: waiting for a final scrape (at most %ss)", grace)
        served = metrics.scrapes_served
        deadline = asyncio.get_running_loop().time() + grace
        while metrics.scrapes_served == served and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
    await runtime.close()
    log.info("stopped")
