"""What every front door is and what it needs from the runtime.

A front door turns one protocol into attribute bags. It mounts gRPC methods and HTTP routes on the
collector's shared listeners (``mixer.frontdoors.listeners``), or runs its own I/O in ``start`` and
``stop`` (a consumer of a queue). ``mixer serve`` starts the doors, then the listeners, and stops
them in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import grpc
from aiohttp import web

from mixer.attributes import Bag, ValueType
from mixer.sdk import QuotaArgs
from mixer.selfmetrics import SelfMetrics

if TYPE_CHECKING:
    from mixer.runtime import CheckResponse

log = logging.getLogger("mixer.frontdoors")


class RuntimeLike(Protocol):
    """The slice of ``mixer.runtime.Runtime`` the front doors call."""

    @property
    def manifest(self) -> Mapping[str, ValueType]: ...

    @property
    def metrics(self) -> SelfMetrics: ...

    @property
    def ready(self) -> bool: ...

    @property
    def batch_size(self) -> int: ...

    async def submit(self, bags: Sequence[Bag], front_door: str) -> int:
        """Hand over a batch of accepted bags: dispatched here (returns instances built) or published
        for workers (returns 0); raises ``Unavailable`` when it cannot be handed over."""
        ...

    async def check(self, bag: Bag, quotas: Mapping[str, QuotaArgs], front_door: str) -> CheckResponse: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """What one caller can make the collector hold at once (``mixer serve`` flags; README "Limits").

    Past a limit the caller is answered at once (HTTP 413 / 429, gRPC INVALID_ARGUMENT /
    RESOURCE_EXHAUSTED) and counted in ``mixer_shed_requests_total`` or ``mixer_rejected_bags_total``;
    the collector never grows to meet the load.
    """

    max_bags_per_request: int = 10_000  # a report (HTTP, native gRPC, one ALS message) with more is refused
    max_body_bytes: int = 4 * 1024 * 1024  # one HTTP body or gRPC message
    max_inflight_bytes: int = 64 * 1024 * 1024  # bodies and messages being handled, per listener
    max_inflight_requests: int = 1024  # HTTP requests being handled
    # Open HTTP connections, per HTTP listener and the HTTP ext_authz door. Not lower: each sidecar
    # checking over HTTP holds a few, and a check refused for want of a connection denies a request.
    max_connections: int = 1024
    max_streams: int = 1024  # access log streams open at once; ext_authz and RLS never wait on them
    stream_idle_seconds: float = 300.0  # an access log stream silent this long is ended (Envoy reopens it)
    keepalive_seconds: float = 60.0  # gRPC pings idle connections so dead peers' streams are freed
    concurrent_reports: int = 1  # reports decoded and dispatched at once; the others wait, admitted

    def problems(self) -> list[str]:
        return [f"{name} must be positive" for name in self.__dataclass_fields__ if getattr(self, name) <= 0]


def report_lane(limits: Limits) -> asyncio.Semaphore:
    """What the report doors share: at most ``concurrent_reports`` reports use the report loop at
    once, so its other requests wait behind a few report slices (~1 ms each), never behind every
    report in flight (checks have a loop of their own: ``mixer.frontdoors.lanes``)."""
    return asyncio.Semaphore(limits.concurrent_reports)


@dataclass(frozen=True, slots=True)
class FrontDoorOptions:
    """Settings of the front doors and their gRPC listener (``mixer serve`` flags)."""

    host: str = "127.0.0.1"
    port: int = 9091
    trust_peer_headers: bool = False  # believe x-mixer-workload/-namespace (spoofable; see docs)
    authz_quotas: tuple[str, ...] = ()  # quota instances every ext_authz Check allocates (amount 1)
    reuse_port: bool = False  # SO_REUSEPORT, for ``--workers``
    max_concurrent_rpcs: int | None = 4096  # a backstop above limits.max_streams: RESOURCE_EXHAUSTED beyond it
    limits: Limits = Limits()
    check_http_port: int = 0  # ext_authz over plain HTTP (Envoy's http_service) on host:port; 0: off


HttpHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class HttpRoute:
    method: str  # "GET", "POST"
    path: str
    handler: HttpHandler
    content_type: str | None = "application/json"  # what the body must be (415 otherwise); None: anything


class FrontDoor:
    """Base class of a front door: ``name`` (its ``front_door`` label) and what it serves.

    Override ``grpc_services`` and/or ``http_routes`` to be mounted on the shared listeners, and
    ``start``/``stop`` for I/O of its own (``stop`` safe twice and without ``start``).
    """

    name: ClassVar[str] = ""
    # gRPC methods that answer checks: run on the listener's loop (the check loop in ``mixer serve``).
    # The others carry reports and are handed to the report loop when the listener is given one.
    check_methods: ClassVar[frozenset[str]] = frozenset()
    # ``start`` and ``stop`` run on the check loop: the door answers checks on I/O of its own.
    on_check_loop: ClassVar[bool] = False

    def grpc_services(self) -> Mapping[str, Mapping[str, grpc.RpcMethodHandler]]:
        """``{"package.Service": {"Method": handler}}``; handlers take and return raw bytes."""
        return {}

    def http_routes(self) -> Sequence[HttpRoute]:
        return ()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def serves(self) -> list[str]:
        """What this door answers, one line each (logged at start-up)."""
        grpc_methods = [
            f"gRPC /{service}/{method}"
            for service, methods in self.grpc_services().items()
            for method in methods
        ]
        return grpc_methods + [f"HTTP {route.method} {route.path}" for route in self.http_routes()]
