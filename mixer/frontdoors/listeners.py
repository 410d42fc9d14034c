"""The two shared listeners the front doors mount on: one grpc.aio server and one aiohttp server.

Each turns a door's ``BadRequest`` into its protocol's answer (INVALID_ARGUMENT / HTTP 400) and
counts it, and ``Unavailable`` into UNAVAILABLE / HTTP 503, so a door's code only raises; each admits
requests within ``Limits`` and sheds the rest (RESOURCE_EXHAUSTED / HTTP 429), counted in
``mixer_shed_requests_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
import orjson
from aiohttp import web
from prometheus_client.exposition import generate_latest

from mixer.frontdoors.admission import Admission
from mixer.frontdoors.connections import capped
from mixer.frontdoors.base import FrontDoor, FrontDoorOptions, HttpHandler, HttpRoute, Limits, RuntimeLike, log
from mixer.frontdoors.intake import BadRequest, Unavailable
from mixer.frontdoors.lanes import handed_over
from mixer.sharedmetrics import PUBLISH_INTERVAL, MergedRegistry, SharedMetrics

GrpcCall = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]]


class _GrpcGuard:
    """Wraps a door's gRPC methods: BadRequest -> INVALID_ARGUMENT, admission, idle streams."""

    def __init__(self, runtime: RuntimeLike, limits: Limits) -> None:
        self.runtime = runtime
        self.limits = limits
        self.admission = Admission(limits.max_inflight_bytes, max_requests=2**62)  # counts: gRPC's own limit
        self.streams = 0

    def method(self, handler: grpc.RpcMethodHandler, front_door: str, check: bool) -> grpc.RpcMethodHandler:
        """``check``: the method answers checks, so a small request of it is never refused for bytes."""
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary, front_door, check))
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._stream(handler.stream_unary, front_door, check))
        if handler.stream_stream is not None:
            # A server-pushing stream (served policy): one per Envoy, idle by design between pushes,
            # so neither the access log streams' limit nor their idle timeout applies.
            return grpc.stream_stream_rpc_method_handler(self._pushing(handler.stream_stream, front_door))
        raise TypeError(f"{front_door}: only unary, client-streaming and bidirectional methods are supported")

    def _unary(self, call: GrpcCall, front_door: str, check: bool) -> GrpcCall:
        @functools.wraps(call)
        async def guarded(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            size = len(request)
            refused = self.admission.try_enter(size, small_pass=check)
            if refused is not None:
                await self._shed(context, front_door, refused)
            try:
                return await self._answer(call, request, context, front_door)
            finally:
                self.admission.leave(size)

        return guarded

    def _stream(self, call: GrpcCall, front_door: str, check: bool) -> GrpcCall:
        @functools.wraps(call)
        async def guarded(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            if self.streams >= self.limits.max_streams:
                await self._shed(context, front_door, "streams")
            self.streams += 1
            try:
                async with contextlib.aclosing(self._messages(requests, front_door, check)) as messages:
                    return await self._answer(call, messages, context, front_door)
            finally:
                self.streams -= 1

        return guarded

    def _pushing(self, call: GrpcCall, front_door: str) -> GrpcCall:
        @functools.wraps(call)
        async def guarded(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            return await self._answer(call, requests, context, front_door)

        return guarded

    async def _messages(
        self, requests: AsyncIterator[bytes], front_door: str, check: bool
    ) -> AsyncGenerator[bytes, None]:
        """The stream's messages, each admitted while the door handles it; ends a stream that stays silent."""
        source = aiter(requests)
        while True:
            try:
                raw = await asyncio.wait_for(anext(source), self.limits.stream_idle_seconds)
            except StopAsyncIteration:
                return
            except TimeoutError:
                log.debug("%s: ending a stream idle for %ss", front_door, self.limits.stream_idle_seconds)
                return
            size = len(raw)
            refused = self.admission.try_enter(size, small_pass=check)
            if refused is not None:
                raise _Shed(refused)
            try:
                yield raw
            finally:
                self.admission.leave(size)

    async def _answer(
        self, call: GrpcCall, request: Any, context: grpc.aio.ServicerContext[Any, Any], front_door: str
    ) -> bytes:
        try:
            return await call(request, context)
        except BadRequest as exc:
            _count(self.runtime, front_door, exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Unavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except _Shed as shed:
            await self._shed(context, front_door, shed.reason)
        raise AssertionError("grpc.aio's abort always raises")

    async def _shed(self, context: grpc.aio.ServicerContext[Any, Any], front_door: str, reason: str) -> None:
        self.runtime.metrics.shed_requests.labels(front_door, reason).inc()
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"overloaded ({reason}); retry later")


class _Shed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _count(runtime: RuntimeLike, front_door: str, exc: BadRequest) -> None:
    if exc.uncounted:
        runtime.metrics.rejected_bags.labels(front_door).inc(exc.uncounted)
    log.debug("%s: rejected: %s", front_door, exc)


class GrpcListener:
    """One grpc.aio server carrying every door's gRPC services; ``start`` fails loudly if the port is taken."""

    name = "grpc"

    def __init__(
        self,
        runtime: RuntimeLike,
        doors: Sequence[FrontDoor],
        options: FrontDoorOptions,
        grace: float = 2.0,
        report_loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.runtime = runtime
        # Where report methods run when this listener runs on the check loop (``mixer serve``):
        # started there, it answers checks itself and hands every other method over.
        self.report_loop = report_loop
        self.grace = grace  # seconds ``stop`` lets calls in flight finish
        self.doors = list(doors)
        self.options = options
        self.port = options.port
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        opts = self.options
        limits = opts.limits
        keepalive_ms = int(limits.keepalive_seconds * 1000)
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 1 if opts.reuse_port else 0),
                ("grpc.max_receive_message_length", limits.max_body_bytes),
                ("grpc.max_send_message_length", limits.max_body_bytes),
                # Ping idle connections and drop the ones that do not answer: a vanished peer's
                # streams are freed instead of held until the stream idle timeout.
                ("grpc.keepalive_time_ms", keepalive_ms),
                ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.http2.max_pings_without_data", 0),
            ],
            maximum_concurrent_rpcs=opts.max_concurrent_rpcs,
        )
        guard = _GrpcGuard(self.runtime, limits)
        for door in self.doors:
            for service, methods in door.grpc_services().items():
                guarded = {
                    name: guard.method(self._placed(door, name, h), door.name, name in door.check_methods)
                    for name, h in methods.items()
                }
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

    def _placed(self, door: FrontDoor, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if self.report_loop is None or method in door.check_methods:
            return handler
        return handed_over(handler, self.report_loop)

    async def stop(self) -> None:
        """Stop accepting, let in-flight calls finish for ``grace`` seconds (streams are then
        cancelled: what they sent so far was dispatched); safe twice."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(self.grace)


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def _guarded_http(
    route: HttpRoute, runtime: RuntimeLike, front_door: str, admission: Admission, limits: Limits
) -> HttpHandler:
    """A door's route behind the checks every door shares: readiness, content type, size, admission."""

    @functools.wraps(route.handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        if not runtime.ready:
            return json_response({"error": "no config loaded yet"}, 503)
        if route.content_type is not None and request.content_type != route.content_type:
            # Also what keeps a web page from posting here: a browser sends application/json
            # cross-origin only after a CORS preflight, which this server never grants.
            _count(runtime, front_door, BadRequest("unsupported content type"))
            length = request.content_length
            if length is not None and length <= limits.max_body_bytes:
                # Read and discard a body within the limit (in chunks: nothing buffered), so the
                # client sees the 415 instead of a connection closed while it is still sending.
                async for _chunk in request.content.iter_chunked(64 * 1024):
                    pass
            return json_response(
                {"error": f"Content-Type must be {route.content_type}, got {request.content_type or 'none'}"}, 415
            )
        length = request.content_length
        if length is not None and length > limits.max_body_bytes:
            return _too_large(runtime, front_door, limits)
        size = length if length is not None else limits.max_body_bytes  # chunked: assume the worst
        refused = admission.try_enter(size)
        if refused is not None:
            runtime.metrics.shed_requests.labels(front_door, refused).inc()
            return json_response({"error": f"overloaded ({refused}); retry later"}, 429, headers={"Retry-After": "1"})
        try:
            return await route.handler(request)
        except BadRequest as exc:
            _count(runtime, front_door, exc)
            return json_response({**exc.details, "error": str(exc)}, 400)
        except Unavailable as exc:
            return json_response({"error": str(exc)}, 503)
        except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past the limit
            return _too_large(runtime, front_door, limits)
        finally:
            admission.leave(size)

    return guarded


def _too_large(runtime: RuntimeLike, front_door: str, limits: Limits) -> web.Response:
    _count(runtime, front_door, BadRequest("body too large"))
    return json_response(
        {"error": f"request body larger than the limit of {limits.max_body_bytes} bytes",
         "limit_bytes": limits.max_body_bytes},
        413,
    )


class HttpListener:
    """One aiohttp server carrying every door's HTTP routes, plus /healthz, /readyz and /metrics."""

    name = "http"

    def __init__(
        self,
        runtime: RuntimeLike,
        doors: Sequence[FrontDoor],
        host: str,
        port: int,
        reuse_port: bool = False,
        limits: Limits = Limits(),
        grace: float = 2.0,
        shared: SharedMetrics | None = None,
    ) -> None:
        self.runtime = runtime
        self.grace = grace  # seconds ``stop`` lets requests in flight finish
        self.shared = shared  # ``--workers N``: /metrics sums every worker's (mixer.sharedmetrics)
        self._snapshots = 0
        self._publishing: asyncio.Task[None] | None = None
        self.host = host
        self.port = port
        self.reuse_port = reuse_port
        self.limits = limits
        self.app = web.Application(client_max_size=limits.max_body_bytes)
        self.admission = Admission(limits.max_inflight_bytes, limits.max_inflight_requests)
        for door in doors:
            for route in door.http_routes():
                guarded = _guarded_http(route, runtime, door.name, self.admission, limits)
                self.app.router.add_route(route.method, route.path, guarded)
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        # lingering_time=0: a request answered without reading its body (shed, too large, wrong type)
        # closes its connection instead of reading and discarding the rest for up to 10 s, which
        # under a flood of large reports costs the event loop as much as serving them would.
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0, lingering_time=0.0)
        await runner.setup()
        connections = runner.server
        assert connections is not None
        shed = self.runtime.metrics.shed_requests.labels(self.name, "connections")
        factory = capped(connections, lambda: len(connections.connections), self.limits.max_connections, shed.inc)
        try:
            server = await asyncio.get_running_loop().create_server(
                factory, self.host, self.port, reuse_port=self.reuse_port or None)
        except OSError:
            await runner.cleanup()
            raise
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        self._runner = runner
        if self.shared is not None:
            self._publishing = asyncio.create_task(self._publish_every(PUBLISH_INTERVAL))
        log.info("HTTP front doors on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop accepting, answer the door requests in flight for up to ``grace`` seconds; safe twice.

        aiohttp's own graceful shutdown stops reading from every connection at once, so a request
        whose body is still arriving would never be answered: wait for those before it runs.
        """
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._server is not None:
            self._server.close()
            self._server = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        while self.admission.requests and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self.admission.requests:
            log.warning("HTTP: %d requests still in flight after %ss; cutting them off",
                        self.admission.requests, self.grace)
        await runner.cleanup()
        if self._publishing is not None:
            self._publishing.cancel()
            self._publisher()()  # the last counts stay in the sum after this worker is gone

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.runtime.ready:
            return web.Response(text="ready\n")
        return web.Response(text="no config loaded\n", status=503)

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.shared is None:
            body = self.runtime.metrics.exposition()
        else:
            body = await asyncio.get_running_loop().run_in_executor(None, self._merged_exposition())
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    def _publisher(self) -> Callable[[], None]:
        """Number this worker's snapshot now; return what takes and writes it (on any thread)."""
        shared, registry = self.shared, self.runtime.metrics.registry
        assert shared is not None
        self._snapshots += 1
        sequence = self._snapshots
        return lambda: shared.publish(list(registry.collect()), sequence)

    def _merged_exposition(self) -> Callable[[], bytes]:
        publish, shared = self._publisher(), self.shared
        assert shared is not None

        def render() -> bytes:
            publish()
            body: bytes = generate_latest(MergedRegistry(shared.merged()))
            return body

        return render

    async def _publish_every(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(None, self._publisher())
            except OSError:
                log.exception("cannot write this worker's metrics snapshot")
            await asyncio.sleep(interval)
