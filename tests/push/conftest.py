"""Fixtures: a loopback HTTP backend whose answers a test programs, an Env, and httpjson handlers
built through config loading (so the ``delivery:`` block is parsed end to end)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from mixer.config import compile_config
from mixer.processes import free_port
from mixer.registry import AdapterRegistry
from mixer.sdk import Env
from mixer.selfmetrics import SelfMetrics

from .httpjson import HttpJsonAdapter, HttpJsonHandler

HANDLER_NAME = "poster.istio-system"


@dataclass
class Reply:
    """One programmed answer: an HTTP status (with Retry-After), a hang, or a partial rejection."""

    status: int = 200
    retry_after: float | None = None
    hang: bool = False
    rejected: int = 0


@dataclass
class Backend:
    """The loopback server: answers from ``script`` in order, then 200; records every call."""

    url: str = ""
    script: list[Reply] = field(default_factory=list)
    calls: list[tuple[float, int]] = field(default_factory=list)  # (loop time, batch length)
    accepted: list[Any] = field(default_factory=list)  # items answered 2xx and not rejected
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends hanging requests

    def program(self, *replies: Reply) -> None:
        self.script.extend(replies)

    async def handle(self, request: web.Request) -> web.Response:
        batch = await request.json()
        self.calls.append((asyncio.get_running_loop().time(), len(batch)))
        reply = self.script.pop(0) if self.script else Reply()
        if reply.hang:
            await self.release.wait()
            return web.json_response({}, status=503)
        if reply.status != 200:
            headers = {"Retry-After": str(reply.retry_after)} if reply.retry_after is not None else {}
            return web.json_response({"error": "programmed"}, status=reply.status, headers=headers)
        self.accepted.extend(batch[reply.rejected:])
        return web.json_response({"rejected": reply.rejected})


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    server = Backend()
    app = web.Application()
    app.router.add_post("/v1/logs", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server.url = f"http://127.0.0.1:{port}/v1/logs"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


@pytest.fixture
def env() -> Env:
    return Env(HANDLER_NAME, logging.getLogger("test.push"), SelfMetrics())


def handler_config(url: str, delivery: str) -> str:
    return f"""
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: poster, namespace: istio-system}}
spec:
  compiledAdapter: httpjson
  params:
    url: {url}
    delivery: {delivery}
"""


Build = Callable[[str], Awaitable[HttpJsonHandler]]


@pytest.fixture
async def build(backend: Backend, env: Env) -> AsyncIterator[Build]:
    """Load a handler config with the given ``delivery:`` block (YAML flow text), build and start it."""
    handlers: list[HttpJsonHandler] = []

    async def _build(delivery: str) -> HttpJsonHandler:
        config = compile_config(
            [("poster.yaml", handler_config(backend.url, delivery))], AdapterRegistry({"httpjson": HttpJsonAdapter()})
        )
        compiled = config.handlers[f"{HANDLER_NAME.split('.')[0]}.handler.istio-system"]
        handler = compiled.adapter.build(compiled.params, env, {})
        assert isinstance(handler, HttpJsonHandler)
        await handler.start()
        handlers.append(handler)
        return handler

    yield _build
    for handler in handlers:
        await handler.close()


def sample(env: Env, name: str, **labels: str) -> float:
    return env.metrics.registry.get_sample_value(name, {"handler": env.handler_name, **labels}) or 0.0


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll (never sleep a fixed time) until the condition holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)
