"""Two event loops in one process, so report dispatch cannot starve checks.

The check loop runs in a thread of its own (``CheckThread``): the gRPC listener (ext_authz, RLS,
the native Check, served policy) and the HTTP ext_authz door live there, and every
``Runtime.check`` runs there, whoever calls it, so the check cache and the quota handlers' state
have one owner (``Runtime.check_loop``). Reports (decode, map, dispatch) run on the main loop, which
owns the report handlers and their push queues: a report RPC arriving on the gRPC listener is
handed over whole (``handed_over``), within the listener's admission limits.
The two loops share only the GIL, which Python hands to a waiting thread every switch interval
(5 ms), so a check waits behind a few slices of report work, not behind the report loop's queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import grpc

from mixer.runtime import on_loop

T = TypeVar("T")
_END = object()  # the relayed stream is over
# How often a thread waiting for the GIL takes it from a busy one (Python's default: 5 ms). A check
# waits for it at each of its few steps while reports are dispatched; 1 ms about halved the checks'
# median latency during report work in bench/overload.py, with no report throughput cost it could see.
CHECK_SWITCH_INTERVAL = 0.001


class CheckThread:
    """A daemon thread running the check loop until ``stop``.

    ``start`` also initialises grpc.aio there: gRPC's completion queue delivers every event through
    the loop that first used grpc.aio, which must be the one that is never busy with reports.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the check thread is not running")
        return self._loop

    def start(self) -> None:
        if self._thread is not None:
            return
        ready: concurrent.futures.Future[asyncio.AbstractEventLoop] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="mixer-checks", daemon=True)
        self._thread.start()
        self._loop = ready.result(timeout=30)

    def _run(self, ready: concurrent.futures.Future[asyncio.AbstractEventLoop]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            grpc.aio.init_grpc_aio()
        except Exception as exc:  # noqa: BLE001 - handed to the starting thread
            ready.set_exception(exc)
            return
        ready.set_result(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            grpc.aio.shutdown_grpc_aio()  # gRPC's poller may bind to another loop once this one is gone
            loop.close()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` run on the check loop."""
        return await on_loop(self.loop, coro)

    def stop(self) -> None:
        """Stop the loop and wait for the thread; safe twice and without ``start``."""
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def handed_over(handler: grpc.RpcMethodHandler, loop: asyncio.AbstractEventLoop) -> grpc.RpcMethodHandler:
    """A report door's gRPC method run on ``loop`` (the report loop) instead of the listener's.

    A client-streaming method's messages are still received on the listener's loop, one at a
    time, each when the method on ``loop`` asks for the next.
    """
    if handler.unary_unary is not None:
        unary = handler.unary_unary

        async def run_unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            return await on_loop(loop, _awaited(unary(request, context)))

        return grpc.unary_unary_rpc_method_handler(run_unary)
    if handler.stream_unary is not None:
        streaming = handler.stream_unary

        async def run_stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            here = asyncio.get_running_loop()
            return await on_loop(loop, _awaited(streaming(_relayed(requests, here), context)))

        return grpc.stream_unary_rpc_method_handler(run_stream)
    raise TypeError("only unary and client-streaming report methods can be handed to the report loop")


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _relayed(source: AsyncIterator[Any], source_loop: asyncio.AbstractEventLoop) -> AsyncIterator[Any]:
    """``source`` (an async iterator on ``source_loop``) read from another loop."""
    iterator = aiter(source)
    while True:
        item = await on_loop(source_loop, _next(iterator))
        if item is _END:
            return
        yield item


async def _next(iterator: AsyncIterator[T]) -> T | object:
    return await anext(iterator, _END)
