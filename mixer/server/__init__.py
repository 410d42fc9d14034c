"""Run the collector: load config, start the front doors, watch config, stop cleanly on signals."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from mixer.config import ConfigError
from mixer.runtime import Runtime
from mixer.server.http import build_app

if TYPE_CHECKING:
    from mixer.frontdoors import FrontDoorOptions

__all__ = ["ServeOptions", "serve"]

log = logging.getLogger("mixer.server")


@dataclass
class ServeOptions:
    config: Sequence[str]
    host: str = "127.0.0.1"
    port: int = 15014
    watch_interval: float = 2.0  # seconds between config change checks; 0 disables
    reuse_port: bool = False
    grpc: FrontDoorOptions | None = None  # the gRPC front doors (ext_authz, ALS, RLS, native); None: off


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
    """Reload when files change; a broken edit is logged and the running config stays."""
    seen = config_signature(paths)
    while True:
        await asyncio.sleep(interval)
        current = config_signature(paths)
        if current == seen:
            continue
        seen = current
        try:
            await runtime.reload(paths)
            log.info("config reloaded from %s", ", ".join(paths))
        except ConfigError as exc:
            log.error("config change rejected, keeping the running config:\n%s", exc)


async def serve(options: ServeOptions, stop: asyncio.Event | None = None) -> None:
    runtime = await Runtime.load(options.config)
    runner = web.AppRunner(build_app(runtime), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port, reuse_port=options.reuse_port or None)
    await site.start()
    log.info("native HTTP API on http://%s:%d", options.host, options.port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = (
        asyncio.create_task(watch_config(runtime, options.config, options.watch_interval))
        if options.watch_interval > 0
        else None
    )
    doors = None
    try:
        if options.grpc is not None:
            from mixer.frontdoors import GrpcFrontDoors

            doors = GrpcFrontDoors(runtime, options.grpc)
            port = await doors.start()
            log.info("gRPC front doors on %s:%d", options.grpc.host, port)
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        if doors is not None:
            await doors.stop()
        await runner.cleanup()
        await runtime.close()
        log.info("stopped")
