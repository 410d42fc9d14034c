"""``envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs`` -> ``runtime.report`` per message."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2

from mixer.attributes import Bag, ValueType
from mixer.envoy_attributes import MappingOptions, http_entry_bag, stream_base_bag, tcp_entry_bag
from mixer.frontdoors.base import FrontDoor, FrontDoorOptions, RuntimeLike, log, report_lane
from mixer.frontdoors.intake import decode_proto, report_each
from mixer.frontdoors.span_attributes import request_span

FRONT_DOOR = "als"
SERVICE = "envoy.service.accesslog.v3.AccessLogService"
_EMPTY: bytes = als_pb2.StreamAccessLogsResponse().SerializeToString()


class AccessLogFrontDoor(FrontDoor):
    """Turns each ALS message (Envoy's batch) into one report of bags.

    The stream's first message carries ``identifier.node``: the reporting sidecar's own identity,
    remembered for the stream. An entry whose attributes do not fit the manifest is dropped and
    counted (``mixer_rejected_bags``); a message that is not protobuf ends the stream with
    INVALID_ARGUMENT (Envoy reopens it and resends its identifier).
    """

    name = FRONT_DOOR

    def __init__(
        self, runtime: RuntimeLike, options: FrontDoorOptions, lane: asyncio.Semaphore | None = None
    ) -> None:
        self._runtime = runtime
        self._lane = lane or report_lane(options.limits)
        self._mapping = MappingOptions(trust_peer_headers=options.trust_peer_headers)
        self._max_bags = options.limits.max_bags_per_request

    def grpc_services(self) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
        return {SERVICE: {"StreamAccessLogs": grpc.stream_unary_rpc_method_handler(self.stream)}}

    async def stream(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        base: Bag = {}
        kind = ""
        deltas = TcpByteDeltas()  # a connection's entries all come on the stream of the Envoy thread serving it
        async for raw in requests:
            async with self._lane:
                message = decode_proto(als_pb2.StreamAccessLogsMessage, raw)
                if message.HasField("identifier"):
                    base, kind = stream_base_bag(message.identifier.node, message.identifier.log_name)
                await self.ingest(message, base, kind, deltas)
        return _EMPTY

    async def ingest(
        self, message: als_pb2.StreamAccessLogsMessage, base: Bag, kind: str, deltas: TcpByteDeltas | None = None
    ) -> int:
        """Map and report one message's entries; returns how many bags were reported."""
        runtime = self._runtime
        manifest = runtime.manifest
        build: Callable[[Any], Bag]
        if message.HasField("http_logs"):
            entries: Any = message.http_logs.log_entry
            build = functools.partial(_http_bag, base=base, kind=kind, manifest=manifest, options=self._mapping)
        elif message.HasField("tcp_logs"):
            entries = message.tcp_logs.log_entry
            tcp_bag = functools.partial(tcp_entry_bag, base=base, kind=kind, manifest=manifest)
            changes = deltas if deltas is not None else TcpByteDeltas()
            build = lambda entry: changes.apply(tcp_bag(entry))  # noqa: E731
        else:
            return 0
        outcome = await report_each(runtime, entries, build, FRONT_DOOR, limit=self._max_bags)
        for rejection in outcome.rejected:
            log.debug("als: dropped entry %d: %s", rejection.index, rejection.error)
        return outcome.accepted


class TcpByteDeltas:
    """Turns the byte totals of a connection's entries into the bytes since its previous entry.

    Envoy logs a TCP connection when it connects, every report interval and when it closes, each
    time with the totals so far; ``istio_tcp_*_bytes_total`` sum ``connection.*.bytes``, so each
    entry must carry only what is new. Remembers the open connections of one stream (at most
    ``max_connections``: past it the oldest is forgotten, and its next entry counts from zero).
    """

    def __init__(self, max_connections: int = 100_000) -> None:
        self._seen: dict[str, tuple[int, int]] = {}  # connection.id -> (received, sent) totals
        self._max = max_connections

    def apply(self, bag: Bag) -> Bag:
        connection = bag.get("connection.id")
        if connection is None:
            return bag  # without an id each entry stands alone (close-only logging)
        received, sent = bag["connection.received.bytes_total"], bag["connection.sent.bytes_total"]
        before_received, before_sent = self._seen.pop(connection, (0, 0))
        bag["connection.received.bytes"] = max(received - before_received, 0)
        bag["connection.sent.bytes"] = max(sent - before_sent, 0)
        if bag.get("connection.event") != "close":
            if len(self._seen) >= self._max:
                del self._seen[next(iter(self._seen))]
            self._seen[connection] = (received, sent)
        return bag


def _http_bag(entry: Any, base: Bag, kind: str, manifest: Mapping[str, ValueType], options: MappingOptions) -> Bag:
    """An HTTP entry's bag with its request's span (``span.*``), for meshes whose proxies do not trace."""
    return request_span(http_entry_bag(entry, base, kind, manifest, options), kind)
