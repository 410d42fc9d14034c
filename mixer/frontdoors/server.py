"""One ``grpc.aio`` server carrying every gRPC front door: ext_authz, ALS, RLS and the native API."""

from __future__ import annotations

import grpc

from mixer.frontdoors.als import SERVICE as ALS
from mixer.frontdoors.als import AccessLogFrontDoor
from mixer.frontdoors.authz import SERVICE as AUTHZ
from mixer.frontdoors.authz import AuthorizationFrontDoor
from mixer.frontdoors.base import FrontDoorOptions, RuntimeLike
from mixer.frontdoors.native import SERVICE as NATIVE
from mixer.frontdoors.native import NativeFrontDoor
from mixer.frontdoors.ratelimit import SERVICE as RLS
from mixer.frontdoors.ratelimit import RateLimitFrontDoor

# Large enough for Envoy's ALS batches, small enough to bound what one message can cost.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class GrpcFrontDoors:
    """Owns the gRPC server; ``start`` binds (fails loudly if the port is taken), ``stop`` drains."""

    def __init__(self, runtime: RuntimeLike, options: FrontDoorOptions | None = None) -> None:
        self.options = options or FrontDoorOptions()
        self.runtime = runtime
        self.authz = AuthorizationFrontDoor(runtime, self.options)
        self.als = AccessLogFrontDoor(runtime, self.options)
        self.ratelimit = RateLimitFrontDoor(runtime, self.options)
        self.native = NativeFrontDoor(runtime, self.options)
        self._server: grpc.aio.Server | None = None
        self.port = self.options.port

    async def start(self) -> int:
        """Start serving; returns the bound port (useful with port 0)."""
        opts = self.options
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 1 if opts.reuse_port else 0),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
            maximum_concurrent_rpcs=opts.max_concurrent_rpcs,
        )
        for service, door in ((AUTHZ, self.authz), (ALS, self.als), (RLS, self.ratelimit), (NATIVE, self.native)):
            methods = door.methods()
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, methods),))
            # Registered methods skip the per-call walk over generic handlers (as generated stubs do).
            server.add_registered_method_handlers(service, methods)
        address = f"{opts.host}:{opts.port}"
        try:
            self.port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen for gRPC on {address}: {exc}") from exc
        if self.port == 0:
            raise OSError(f"cannot listen for gRPC on {address}")
        await server.start()
        self._server = server
        return self.port

    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting, let in-flight calls finish for ``grace`` seconds; safe twice."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()
