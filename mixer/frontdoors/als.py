"""``envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs`` -> ``runtime.report`` per message."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2

from mixer.attributes import Bag
from mixer.envoy_attributes import MappingOptions, http_entry_bag, stream_base_bag, tcp_entry_bag
from mixer.frontdoors.base import FrontDoor, FrontDoorOptions, RuntimeLike, log
from mixer.frontdoors.intake import decode_proto, report_each

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

    def __init__(self, runtime: RuntimeLike, options: FrontDoorOptions) -> None:
        self._runtime = runtime
        self._mapping = MappingOptions(trust_peer_headers=options.trust_peer_headers)

    def grpc_services(self) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
        return {SERVICE: {"StreamAccessLogs": grpc.stream_unary_rpc_method_handler(self.stream)}}

    async def stream(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        base: Bag = {}
        kind = ""
        async for raw in requests:
            message = decode_proto(als_pb2.StreamAccessLogsMessage, raw)
            if message.HasField("identifier"):
                base, kind = stream_base_bag(message.identifier.node, message.identifier.log_name)
            await self.ingest(message, base, kind)
        return _EMPTY

    async def ingest(self, message: als_pb2.StreamAccessLogsMessage, base: Bag, kind: str) -> int:
        """Map and report one message's entries; returns how many bags were reported."""
        runtime = self._runtime
        manifest = runtime.manifest
        build: Callable[[Any], Bag]
        if message.HasField("http_logs"):
            entries: Any = message.http_logs.log_entry
            build = functools.partial(http_entry_bag, base=base, kind=kind, manifest=manifest, options=self._mapping)
        elif message.HasField("tcp_logs"):
            entries = message.tcp_logs.log_entry
            build = functools.partial(tcp_entry_bag, base=base, kind=kind, manifest=manifest)
        else:
            return 0
        outcome = await report_each(runtime, entries, build, FRONT_DOOR)
        for rejection in outcome.rejected:
            log.debug("als: dropped entry %d: %s", rejection.index, rejection.error)
        return outcome.accepted
