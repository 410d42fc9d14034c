"""The native Check/Report API over gRPC: JSON bodies (the HTTP API's) under ``/mixer.v1.Mixer/*``.

No protobuf schema: methods ``/mixer.v1.Mixer/Check`` and ``/mixer.v1.Mixer/Report`` take and return
the same JSON bytes as ``POST /v1/check`` and ``POST /v1/report`` (shapes in ``mixer.api``). A
request the HTTP API answers with 400 ends with INVALID_ARGUMENT and the same message.
"""

from __future__ import annotations

from typing import Any

import grpc
import orjson

from mixer.api import RequestError, check_response_json, parse_check, parse_report
from mixer.frontdoors.base import FrontDoorOptions, RuntimeLike, reject

FRONT_DOOR = "native_grpc"
SERVICE = "mixer.v1.Mixer"


def _load(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"bad JSON: {exc}") from None


class NativeFrontDoor:
    def __init__(self, runtime: RuntimeLike, options: FrontDoorOptions) -> None:
        self._runtime = runtime

    def methods(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "Check": grpc.unary_unary_rpc_method_handler(self.check),
            "Report": grpc.unary_unary_rpc_method_handler(self.report),
        }

    async def check(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        runtime = self._runtime
        try:
            bag, quotas = parse_check(_load(raw), runtime.manifest)
        except RequestError as exc:
            await reject(context, runtime.metrics, FRONT_DOOR, str(exc))
        answer = await runtime.check(bag, quotas, FRONT_DOOR)
        return orjson.dumps(check_response_json(answer))

    async def report(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        runtime = self._runtime
        try:
            parsed = parse_report(_load(raw), runtime.manifest)
        except RequestError as exc:
            await reject(context, runtime.metrics, FRONT_DOOR, str(exc))
        bags = parsed.bags
        dispatched = runtime.report(bags, FRONT_DOOR) if bags else 0
        if parsed.rejected:
            # As the HTTP API: good bags are kept, the call fails naming each bad one.
            runtime.metrics.rejected_bags.labels(FRONT_DOOR).inc(len(parsed.rejected) - 1)
            messages = "; ".join(f"bag {r['index']}: {r['error']}" for r in parsed.rejected)
            await reject(context, runtime.metrics, FRONT_DOOR, f"accepted {len(bags)}; rejected: {messages}")
        return orjson.dumps({"accepted": len(bags), "instances": dispatched})
