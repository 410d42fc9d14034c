"""The native Check/Report API over gRPC: JSON bodies (the HTTP API's) under ``/mixer.v1.Mixer/*``.

No protobuf schema: method ``/mixer.v1.Mixer/Check`` and ``/mixer.v1.Mixer/Report`` take and
return the same JSON bytes as ``POST /v1/check`` and ``POST /v1/report``.
"""

from __future__ import annotations

from typing import Any

import grpc

from mixer.attributes import BagError
from mixer.frontdoors import jsonapi
from mixer.frontdoors.base import MAX_BATCH, FrontDoorOptions, RuntimeLike, describe_bag_error, reject

FRONT_DOOR = "native_grpc"
SERVICE = "mixer.v1.Mixer"


class NativeFrontDoor:
    def __init__(self, runtime: RuntimeLike, options: FrontDoorOptions) -> None:
        self._runtime = runtime

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Check": grpc.unary_unary_rpc_method_handler(self.check),
                "Report": grpc.unary_unary_rpc_method_handler(self.report),
            },
        )

    async def check(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        runtime = self._runtime
        try:
            bag, quotas = jsonapi.parse_check(raw, runtime.manifest)
        except BagError as exc:
            await reject(context, runtime.metrics, FRONT_DOOR, describe_bag_error(exc))
            raise AssertionError("unreachable") from None
        except ValueError as exc:
            await reject(context, runtime.metrics, FRONT_DOOR, str(exc))
            raise AssertionError("unreachable") from None
        answer = await runtime.check(bag, quotas, FRONT_DOOR)
        return jsonapi.encode_check(answer)

    async def report(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        runtime = self._runtime
        try:
            bags = jsonapi.parse_report(raw, runtime.manifest)
        except BagError as exc:
            await reject(context, runtime.metrics, FRONT_DOOR, describe_bag_error(exc))
            raise AssertionError("unreachable") from None
        except ValueError as exc:
            await reject(context, runtime.metrics, FRONT_DOOR, str(exc))
            raise AssertionError("unreachable") from None
        for start in range(0, len(bags), MAX_BATCH):
            runtime.report(bags[start : start + MAX_BATCH], FRONT_DOOR)
        return jsonapi.encode_report(len(bags))
