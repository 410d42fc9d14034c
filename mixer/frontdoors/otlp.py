"""OTLP traces: ``TraceService/Export`` on the gRPC listener and ``POST /v1/traces`` (OTLP/HTTP,
protobuf) on the HTTP listener -> one bag per span (``mixer.frontdoors.span_attributes``).

A span that does not fit (a bad id, wrongly typed attribute) is rejected alone and the rest are
reported; the answer is OTLP's partial success (``rejected_spans`` and a message naming each
rejected span's index in the request). Bytes that are not an export request are refused whole:
INVALID_ARGUMENT, or HTTP 400 with a ``google.rpc.Status``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

import grpc
from aiohttp import web
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from mixer.attributes import Bag, BagError
from mixer.frontdoors.base import FrontDoor, FrontDoorOptions, HttpRoute, RuntimeLike, log, report_lane
from mixer.frontdoors import otlp_wire
from mixer.frontdoors.intake import BadRequest, decode_proto, report_each
from mixer.frontdoors.span_attributes import otlp_span_bag, resource_base_bag

FRONT_DOOR = "otlp"
SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
PROTOBUF = "application/x-protobuf"
_INVALID_ARGUMENT = 3  # google.rpc.Code
_NAMED_REJECTIONS = 20  # a request of many bad spans gets a bounded answer; all of them are counted


class OtlpTraceFrontDoor(FrontDoor):
    """Spans from any OTLP exporter (Envoy's OpenTelemetry tracer, an SDK, a Collector) into the rules."""

    name = FRONT_DOOR

    def __init__(
        self, runtime: RuntimeLike, options: FrontDoorOptions, lane: asyncio.Semaphore | None = None
    ) -> None:
        self._runtime = runtime
        self._trust_peer_headers = options.trust_peer_headers
        self._max_spans = options.limits.max_bags_per_request
        self._lane = lane or report_lane(options.limits)

    def grpc_services(self) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
        return {SERVICE: {"Export": grpc.unary_unary_rpc_method_handler(self.export_grpc)}}

    def http_routes(self) -> Sequence[HttpRoute]:
        # The door checks the content type itself: OTLP answers a wrong one with a google.rpc.Status body.
        return (HttpRoute("POST", "/v1/traces", self.export_http, content_type=None),)

    async def export_grpc(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return await self.export(raw)

    async def export_http(self, request: web.Request) -> web.StreamResponse:
        content_type = request.content_type
        if content_type != PROTOBUF:
            # OTLP/JSON is not served; a client that can only send it learns so at once.
            return _status_response(415, f"only {PROTOBUF} is served, not {content_type or 'no content type'}")
        try:
            answer = await self.export(await request.read())
        except BadRequest as exc:
            self._runtime.metrics.rejected_bags.labels(FRONT_DOOR).inc(exc.uncounted)
            log.debug("%s: rejected: %s", FRONT_DOOR, exc)
            return _status_response(400, str(exc))
        return web.Response(body=answer, content_type=PROTOBUF)

    async def export(self, raw: bytes) -> bytes:
        """Report every span of one ExportTraceServiceRequest; the serialized response."""
        request = decode_proto(otlp_wire.ExportTraceServiceRequest, raw)
        runtime = self._runtime
        items: list[tuple[Bag | BagError, Any]] = []
        for resource_spans in request.resource_spans:
            try:
                base: Bag | BagError = resource_base_bag(resource_spans.resource, runtime.manifest)
            except BagError as exc:
                base = exc  # each span of this resource is refused with it; the others are reported
            for scope_spans in resource_spans.scope_spans:
                items.extend((base, span) for span in scope_spans.spans)
        build = functools.partial(_bag, manifest=runtime.manifest, trust_peer_headers=self._trust_peer_headers)
        async with self._lane:
            outcome = await report_each(runtime, items, build, FRONT_DOOR, limit=self._max_spans)
        response = trace_service_pb2.ExportTraceServiceResponse()
        if rejected := outcome.rejected:
            response.partial_success.rejected_spans = len(rejected)
            named = "; ".join(f"span {r.index}: {r.error}" for r in rejected[:_NAMED_REJECTIONS])
            more = len(rejected) - _NAMED_REJECTIONS
            response.partial_success.error_message = named + (f"; and {more} more" if more > 0 else "")
            log.debug("%s: %s", FRONT_DOOR, response.partial_success.error_message)
        return bytes(response.SerializeToString())


def _bag(item: tuple[Bag | BagError, Any], manifest: Any, trust_peer_headers: bool) -> Bag:
    base, span = item
    if isinstance(base, BagError):
        raise base.with_traceback(None)
    return otlp_span_bag(span, base, manifest, trust_peer_headers)


def _status_response(http_status: int, message: str) -> web.Response:
    """OTLP/HTTP's error body: a google.rpc.Status in the request's encoding (protobuf)."""
    status = status_pb2.Status(code=_INVALID_ARGUMENT, message=message)
    return web.Response(status=http_status, body=status.SerializeToString(), content_type=PROTOBUF)
