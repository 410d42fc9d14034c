"""gRPC front doors: Envoy's ext_authz, access log and rate limit services, and the native API.

Usage::

    doors = GrpcFrontDoors(runtime, FrontDoorOptions(host="127.0.0.1", port=9091))
    await doors.start()
    ...
    await doors.stop()
"""

from __future__ import annotations

from mixer.frontdoors.base import FrontDoorOptions, RuntimeLike
from mixer.frontdoors.server import GrpcFrontDoors

__all__ = ["FrontDoorOptions", "GrpcFrontDoors", "RuntimeLike"]
