"""The native Check and Report API: JSON over HTTP (``POST /v1/check``, ``POST /v1/report``) and the
same JSON bytes over gRPC (``/mixer.v1.Mixer/Check``, ``/mixer.v1.Mixer/Report``).

No protobuf schema: a request the HTTP API answers with 400 ends over gRPC with INVALID_ARGUMENT and
the same message. A bad bag in a report is rejected alone, naming its index and attribute; the other
bags are dispatched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import orjson
from aiohttp import web

from mixer.attributes import Bag, BagError, ValueType, bag_from_json, format_duration
from mixer.frontdoors.base import FrontDoor, FrontDoorOptions, HttpRoute, RuntimeLike, report_lane
from mixer.frontdoors.intake import BadRequest, ReportOutcome, decode_json, report_each
from mixer.frontdoors.listeners import json_response
from mixer.runtime import CheckResponse
from mixer.sdk import QuotaArgs

SERVICE = "mixer.v1.Mixer"


def report_items(body: Any) -> list[Any]:
    """``{"attributes": [bag, ...]}``: the raw bags, each converted (or rejected) on its own."""
    if not isinstance(body, dict) or not isinstance(body.get("attributes"), list):
        raise BadRequest('expected {"attributes": [{...}, ...]}')
    items: list[Any] = body["attributes"]
    return items


_CHECK_FIELDS = frozenset({"attributes", "quotas", "deduplication_id"})


def parse_check(body: Any, manifest: Mapping[str, ValueType]) -> tuple[Bag, dict[str, QuotaArgs]]:
    """``{"attributes": {...}, "quotas": {"name": {"amount": N, "best_effort": bool}}}``."""
    if not isinstance(body, dict) or not isinstance(body.get("attributes", {}), dict):
        raise BadRequest('expected {"attributes": {...}, "quotas": {...}}')
    if not _CHECK_FIELDS.issuperset(body):
        raise BadRequest(f"unknown fields: {', '.join(sorted(set(body) - _CHECK_FIELDS))}")
    try:
        bag = bag_from_json(body.get("attributes", {}), manifest)
    except BagError as exc:
        raise BadRequest(str(exc)) from None
    quotas: dict[str, QuotaArgs] = {}
    raw_quotas = body.get("quotas") or {}
    if not isinstance(raw_quotas, dict):
        raise BadRequest("quotas must be an object of quota names")
    for name, raw in raw_quotas.items():
        if not isinstance(raw, dict):
            raise BadRequest(f"quota {name!r}: expected an object with amount and best_effort")
        amount = raw.get("amount", 1)
        best_effort = raw.get("best_effort", False)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise BadRequest(f"quota {name!r}: amount must be a non-negative integer")
        if not isinstance(best_effort, bool):
            raise BadRequest(f"quota {name!r}: best_effort must be a boolean")
        quotas[str(name)] = QuotaArgs(amount, best_effort, str(body.get("deduplication_id", "")))
    return bag, quotas


def check_response_json(response: CheckResponse) -> dict[str, Any]:
    result = response.result
    out: dict[str, Any] = {
        "status": {"code": result.status_code, "message": result.message},
        "valid_duration": format_duration(result.valid_duration),
        "valid_use_count": result.valid_use_count,
        "quotas": {
            name: {
                "granted_amount": q.granted_amount,
                "valid_duration": format_duration(q.valid_duration),
                "status": {"code": q.status_code, "message": q.message},
            }
            for name, q in response.quotas.items()
        },
    }
    if result.http_status is not None:
        out["http_status"] = result.http_status
    if result.headers:
        out["headers"] = dict(result.headers)
    return out


class _NativeApi:
    """The calls both transports share: JSON body in, JSON-able answer out."""

    def __init__(
        self, runtime: RuntimeLike, front_door: str, options: FrontDoorOptions, lane: asyncio.Semaphore | None
    ) -> None:
        self._runtime = runtime
        self._front_door = front_door
        self._max_bags = options.limits.max_bags_per_request
        self._lane = lane or report_lane(options.limits)

    async def check(self, raw: bytes) -> dict[str, Any]:
        runtime = self._runtime
        bag, quotas = parse_check(decode_json(raw), runtime.manifest)
        return check_response_json(await runtime.check(bag, quotas, self._front_door))

    async def report(self, raw: bytes) -> ReportOutcome:
        runtime = self._runtime
        async with self._lane:
            manifest = runtime.manifest
            items = report_items(decode_json(raw))
            outcome = await report_each(
                runtime, items, lambda item: bag_from_json(item, manifest), self._front_door, limit=self._max_bags
            )
        outcome.raise_for_rejections()
        return outcome


class NativeHttpFrontDoor(FrontDoor):
    name = "http"

    def __init__(
        self, runtime: RuntimeLike, options: FrontDoorOptions, lane: asyncio.Semaphore | None = None
    ) -> None:
        self._api = _NativeApi(runtime, self.name, options, lane)

    def http_routes(self) -> Sequence[HttpRoute]:
        return (HttpRoute("POST", "/v1/report", self.report), HttpRoute("POST", "/v1/check", self.check))

    async def report(self, request: web.Request) -> web.Response:
        outcome = await self._api.report(await request.read())
        return json_response(outcome.to_json())

    async def check(self, request: web.Request) -> web.Response:
        return json_response(await self._api.check(await request.read()))


class NativeGrpcFrontDoor(FrontDoor):
    name = "native_grpc"
    check_methods = frozenset({"Check"})

    def __init__(
        self, runtime: RuntimeLike, options: FrontDoorOptions, lane: asyncio.Semaphore | None = None
    ) -> None:
        self._api = _NativeApi(runtime, self.name, options, lane)

    def grpc_services(self) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
        return {
            SERVICE: {
                "Check": grpc.unary_unary_rpc_method_handler(self.check),
                "Report": grpc.unary_unary_rpc_method_handler(self.report),
            }
        }

    async def check(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return orjson.dumps(await self._api.check(raw))

    async def report(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return orjson.dumps((await self._api.report(raw)).to_json())
