"""The two shared listeners the front doors mount on: one grpc.aio server and one aiohttp server.

Each turns a door's ``BadRequest`` into its protocol's answer (INVALID_ARGUMENT / HTTP 400) and
counts it, and ``Unavailable`` into UNAVAILABLE / HTTP 503, so a door's code only raises.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import orjson
from aiohttp import web

from mixer.frontdoors.base import FrontDoor, FrontDoorOptions, HttpHandler, RuntimeLike, log
from mixer.frontdoors.intake import BadRequest, Unavailable

# Large enough for Envoy's ALS batches, small enough to bound what one message can cost.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024  # an HTTP request larger than this is refused, not buffered

GrpcCall = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]]


def _guarded_grpc(call: GrpcCall, runtime: RuntimeLike, front_door: str) -> GrpcCall:
    @functools.wraps(call)
    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        try:
            return await call(request, context)
        except BadRequest as exc:
            _count(runtime, front_door, exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("grpc.aio's abort always raises") from None
        except Unavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise AssertionError("grpc.aio's abort always raises") from None

    return guarded


def _guard_method(handler: grpc.RpcMethodHandler, runtime: RuntimeLike, front_door: str) -> grpc.RpcMethodHandler:
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_guarded_grpc(handler.unary_unary, runtime, front_door))
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(_guarded_grpc(handler.stream_unary, runtime, front_door))
    if handler.stream_stream is not None:  # a server-pushing stream (served policy): it writes, returns None
        return grpc.stream_stream_rpc_method_handler(_guarded_grpc(handler.stream_stream, runtime, front_door))
    raise TypeError(f"{front_door}: only unary, client-streaming and bidirectional methods are supported")


def _count(runtime: RuntimeLike, front_door: str, exc: BadRequest) -> None:
    if exc.uncounted:
        runtime.metrics.rejected_bags.labels(front_door).inc(exc.uncounted)
    log.debug("%s: rejected: %s", front_door, exc)


class GrpcListener:
    """One grpc.aio server carrying every door's gRPC services; ``start`` fails loudly if the port is taken."""

    name = "grpc"

    def __init__(self, runtime: RuntimeLike, doors: Sequence[FrontDoor], options: FrontDoorOptions) -> None:
        self.runtime = runtime
        self.doors = list(doors)
        self.options = options
        self.port = options.port
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        opts = self.options
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 1 if opts.reuse_port else 0),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
            maximum_concurrent_rpcs=opts.max_concurrent_rpcs,
        )
        for door in self.doors:
            for service, methods in door.grpc_services().items():
                guarded = {name: _guard_method(h, self.runtime, door.name) for name, h in methods.items()}
                server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, guarded),))
                # Registered methods skip the per-call walk over generic handlers (as generated stubs do).
                server.add_registered_method_handlers(service, guarded)
        address = f"{opts.host}:{opts.port}"
        try:
            self.port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen for gRPC on {address}: {exc}") from exc
        if self.port == 0:
            raise OSError(f"cannot listen for gRPC on {address}")
        await server.start()
        self._server = server
        log.info("gRPC front doors on %s:%d", opts.host, self.port)

    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting, let in-flight calls finish for ``grace`` seconds; safe twice."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _guarded_http(handler: HttpHandler, runtime: RuntimeLike, front_door: str) -> HttpHandler:
    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        if not runtime.ready:
            return json_response({"error": "no config loaded yet"}, 503)
        try:
            return await handler(request)
        except BadRequest as exc:
            _count(runtime, front_door, exc)
            return json_response({**exc.details, "error": str(exc)}, 400)
        except Unavailable as exc:
            return json_response({"error": str(exc)}, 503)

    return guarded


class HttpListener:
    """One aiohttp server carrying every door's HTTP routes, plus /healthz, /readyz and /metrics."""

    name = "http"

    def __init__(
        self, runtime: RuntimeLike, doors: Sequence[FrontDoor], host: str, port: int, reuse_port: bool = False
    ) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self.reuse_port = reuse_port
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        for door in doors:
            for route in door.http_routes():
                self.app.router.add_route(route.method, route.path, _guarded_http(route.handler, runtime, door.name))
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_port=self.reuse_port or None)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("HTTP front doors on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.runtime.ready:
            return web.Response(text="ready\n")
        return web.Response(text="no config loaded\n", status=503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.runtime.metrics.exposition(), content_type="text/plain", charset="utf-8")
