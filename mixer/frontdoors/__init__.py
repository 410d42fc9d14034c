"""Front doors: each turns one protocol into attribute bags for the runtime.

Envoy's ext_authz, access log and rate limit services, the native Check/Report API (JSON over
HTTP and gRPC) and OTLP traces (gRPC and HTTP). Doors mount on two shared listeners; ``mixer serve``
starts the doors and the listeners and stops them in reverse order::

    doors = standard_doors(runtime, FrontDoorOptions(port=9091))
    grpc_listener = GrpcListener(runtime, doors, options)
    http_listener = HttpListener(runtime, doors, "127.0.0.1", 15014)
    for part in (*doors, grpc_listener, http_listener):
        await part.start()

``mixer serve`` runs the gRPC listener and the doors that answer checks on a loop of their own
(``mixer.frontdoors.lanes``); a door names its check methods in ``FrontDoor.check_methods``.

Adding a door: a module with a ``FrontDoor`` subclass, and one line in ``standard_doors``.
"""

from __future__ import annotations

from typing import Protocol

from mixer.frontdoors.als import AccessLogFrontDoor
from mixer.frontdoors.authz import AuthorizationFrontDoor
from mixer.frontdoors.base import FrontDoor, FrontDoorOptions, HttpRoute, Limits, RuntimeLike, report_lane
from mixer.frontdoors.http_check import HttpCheckFrontDoor
from mixer.frontdoors.intake import BadRequest
from mixer.frontdoors.listeners import GrpcListener, HttpListener
from mixer.frontdoors.native import NativeGrpcFrontDoor, NativeHttpFrontDoor
from mixer.frontdoors.otlp import OtlpTraceFrontDoor
from mixer.frontdoors.policy import PolicyDiscoveryFrontDoor, PolicySource
from mixer.frontdoors.ratelimit import RateLimitFrontDoor

__all__ = [
    "BadRequest",
    "FrontDoor",
    "FrontDoorOptions",
    "GrpcListener",
    "HttpListener",
    "HttpRoute",
    "Limits",
    "RuntimeLike",
    "ServingRuntime",
    "standard_doors",
]


class ServingRuntime(RuntimeLike, PolicySource, Protocol):
    """The runtime as every door together needs it (``mixer.runtime.Runtime``)."""


def standard_doors(runtime: ServingRuntime, options: FrontDoorOptions) -> list[FrontDoor]:
    """Every front door the collector serves, in start-up order; the report doors share one lane."""
    lane = report_lane(options.limits)
    return [
        PolicyDiscoveryFrontDoor(runtime, options),
        AuthorizationFrontDoor(runtime, options),
        HttpCheckFrontDoor(runtime, options),
        AccessLogFrontDoor(runtime, options, lane),
        RateLimitFrontDoor(runtime, options),
        NativeGrpcFrontDoor(runtime, options, lane),
        NativeHttpFrontDoor(runtime, options, lane),
        OtlpTraceFrontDoor(runtime, options, lane),
    ]
