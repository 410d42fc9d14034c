"""``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`` -> quota allocations."""

from __future__ import annotations

from typing import Any

import grpc
from envoy.service.ratelimit.v3 import rls_pb2

from mixer import sdk
from mixer.envoy_attributes import descriptor_bag
from mixer.frontdoors.base import FrontDoor, FrontDoorOptions, RuntimeLike
from mixer.frontdoors.intake import decode_proto, map_one

FRONT_DOOR = "rls"
SERVICE = "envoy.service.ratelimit.v3.RateLimitService"

_OK = rls_pb2.RateLimitResponse.OK
_OVER = rls_pb2.RateLimitResponse.OVER_LIMIT
_UNITS = {
    1: rls_pb2.RateLimitResponse.RateLimit.SECOND,
    60: rls_pb2.RateLimitResponse.RateLimit.MINUTE,
    3600: rls_pb2.RateLimitResponse.RateLimit.HOUR,
    86400: rls_pb2.RateLimitResponse.RateLimit.DAY,
}


def _describe_limit(status: rls_pb2.RateLimitResponse.DescriptorStatus, limited: sdk.QuotaResult | None) -> None:
    """Fill ``current_limit`` when a handler tells its limit and window (memquota does).

    Envoy derives its x-ratelimit-* headers from it; RLS units are whole seconds, minutes, hours or
    days, so other windows leave it unset.
    """
    if limited is None or limited.limit is None or limited.window is None:
        return
    seconds = limited.window.total_seconds()
    unit = _UNITS.get(int(seconds)) if seconds.is_integer() else None
    if unit is not None:
        status.current_limit.requests_per_unit = limited.limit
        status.current_limit.unit = unit


class RateLimitFrontDoor(FrontDoor):
    """Each descriptor is a bag (its entries) that allocates its quota instances, amount ``hits_addend``.

    A descriptor is OVER_LIMIT when any of its quotas grants less than asked; the answer is
    OVER_LIMIT when any descriptor is. Check rules do not apply here: only quotas decide.
    """

    name = FRONT_DOOR
    check_methods = frozenset({"ShouldRateLimit"})

    def __init__(self, runtime: RuntimeLike, options: FrontDoorOptions) -> None:
        self._runtime = runtime

    def grpc_services(self) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
        return {SERVICE: {"ShouldRateLimit": grpc.unary_unary_rpc_method_handler(self.should_rate_limit)}}

    async def should_rate_limit(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        runtime = self._runtime
        request = decode_proto(rls_pb2.RateLimitRequest, raw)
        manifest = runtime.manifest
        response = rls_pb2.RateLimitResponse(overall_code=_OK)
        default_hits = request.hits_addend or 1
        for descriptor in request.descriptors:
            bag, names = map_one(lambda d: descriptor_bag(request.domain, d.entries, manifest), descriptor)
            hits = descriptor.hits_addend.value if descriptor.HasField("hits_addend") else default_hits
            status = response.statuses.add(code=_OK)
            if not names:
                continue
            answer = await runtime.check(bag, {name: sdk.QuotaArgs(amount=hits) for name in names}, FRONT_DOOR)
            verdict = answer.quota_verdict()
            if verdict.exhausted is not None:
                status.code = _OVER
                response.overall_code = _OVER
            if verdict.remaining is not None:
                status.limit_remaining = max(verdict.remaining, 0)
            _describe_limit(status, verdict.limited)
            if verdict.reset is not None:
                status.duration_until_reset.FromTimedelta(verdict.reset)
        data: bytes = response.SerializeToString()
        return data
