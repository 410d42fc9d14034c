"""The /metrics endpoint: a small aiohttp app on the handler's event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from aiohttp import web

# (Accept header) -> a formatter to run off the loop, and its content type
Scrape = Callable[[str], tuple[Callable[[], bytes], str]]


class MetricsServer:
    """Serves ``GET /metrics``; the snapshot is taken on the loop, the formatting in a worker thread."""

    def __init__(self, host: str, port: int, scrape: Scrape) -> None:
        self.host, self.port = host, port
        self._scrape = scrape
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._index)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        # SO_REUSEPORT: a config reload starts the new handler before the old one closes, on the same port.
        site = web.TCPSite(runner, self.host, self.port, reuse_port=hasattr(socket, "SO_REUSEPORT"))
        try:
            await site.start()
        except OSError as err:
            await runner.cleanup()
            raise OSError(err.errno, f"prometheus adapter cannot listen on {self.host}:{self.port}: {err.strerror}") from err
        self._runner = runner
        if self.port == 0:  # an ephemeral port was asked for: learn which one we got
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                self.port = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        render, content_type = self._scrape(request.headers.get("Accept", ""))
        body = await asyncio.get_running_loop().run_in_executor(None, render)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type  # set raw: aiohttp would reject the version parameter
        return response

    async def _index(self, _request: web.Request) -> web.Response:
        return web.Response(text='<a href="/metrics">/metrics</a>\n', content_type="text/html")
