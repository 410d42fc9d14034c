"""``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`` -> quota allocations."""

from __future__ import annotations

from typing import Any

import grpc
from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf.message import DecodeError

from mixer import sdk
from mixer.attributes import BagError
from mixer.frontdoors.base import FrontDoorOptions, RuntimeLike, describe_bag_error, reject
from mixer.envoy_attributes import descriptor_bag

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


def _describe_limit(status: rls_pb2.RateLimitResponse.DescriptorStatus, result: sdk.QuotaResult) -> None:
    """Fill ``current_limit`` when the handler tells its limit and window (memquota does).

    Envoy derives its x-ratelimit-* headers from it; RLS units are whole seconds, minutes, hours or
    days, so other windows leave it unset.
    """
    limit, window = result.limit, result.window
    if limit is None or window is None:
        return
    unit = _UNITS.get(int(window.total_seconds())) if window.total_seconds().is_integer() else None
    if unit is not None:
        status.current_limit.requests_per_unit = limit
        status.current_limit.unit = unit


class RateLimitFrontDoor:
    """Each descriptor is a bag (its entries) that allocates its quota instances, amount ``hits_addend``.

    A descriptor is OVER_LIMIT when any of its quotas grants less than asked; the answer is
    OVER_LIMIT when any descriptor is. Check rules do not apply here: only quotas decide.
    """

    def __init__(self, runtime: RuntimeLike, options: FrontDoorOptions) -> None:
        self._runtime = runtime

    def methods(self) -> dict[str, grpc.RpcMethodHandler]:
        return {"ShouldRateLimit": grpc.unary_unary_rpc_method_handler(self.should_rate_limit)}

    async def should_rate_limit(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        runtime = self._runtime
        try:
            request = rls_pb2.RateLimitRequest.FromString(raw)
        except DecodeError as exc:
            await reject(context, runtime.metrics, FRONT_DOOR, f"malformed RateLimitRequest: {exc}")
        response = rls_pb2.RateLimitResponse(overall_code=_OK)
        default_hits = request.hits_addend or 1
        for descriptor in request.descriptors:
            try:
                bag, names = descriptor_bag(request.domain, descriptor.entries, runtime.manifest)
            except BagError as exc:
                await reject(context, runtime.metrics, FRONT_DOOR, describe_bag_error(exc))
            hits = descriptor.hits_addend.value if descriptor.HasField("hits_addend") else default_hits
            status = response.statuses.add(code=_OK)
            if not names:
                continue
            answer = await runtime.check(bag, {name: sdk.QuotaArgs(amount=hits) for name in names}, FRONT_DOOR)
            remaining: int | None = None
            reset = None
            for name in names:
                result = answer.quotas.get(name)
                if result is None:
                    continue  # no rule allocates this quota for this bag: unlimited
                if result.granted_amount < hits:
                    status.code = _OVER
                    response.overall_code = _OVER
                left = result.remaining  # known to handlers with windows (memquota)
                if isinstance(left, int):
                    remaining = left if remaining is None else min(remaining, left)
                _describe_limit(status, result)
                if result.valid_duration:
                    reset = result.valid_duration if reset is None else min(reset, result.valid_duration)
            if remaining is not None:
                status.limit_remaining = max(remaining, 0)
            if reset is not None:
                status.duration_until_reset.FromTimedelta(reset)
        data: bytes = response.SerializeToString()
        return data
