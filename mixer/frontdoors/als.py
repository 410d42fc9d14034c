"""``envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs`` -> ``runtime.report`` per message."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2
from google.protobuf.message import DecodeError

from mixer.attributes import Bag, BagError
from mixer.frontdoors.base import FrontDoorOptions, RuntimeLike, log, reject
from mixer.envoy_attributes import MappingOptions, http_entry_bag, stream_base_bag, tcp_entry_bag

FRONT_DOOR = "als"
SERVICE = "envoy.service.accesslog.v3.AccessLogService"
# Entries mapped and reported per slice before yielding to the event loop (~1-2 ms of work).
SLICE = 128
_EMPTY: bytes = als_pb2.StreamAccessLogsResponse().SerializeToString()


class AccessLogFrontDoor:
    """Turns each ALS message (Envoy's batch) into one report of bags.

    The stream's first message carries ``identifier.node``: the reporting sidecar's own identity,
    remembered for the stream. An entry whose attributes do not fit the manifest is dropped and
    counted (``mixer_rejected_bags``); a message that is not protobuf ends the stream with
    INVALID_ARGUMENT (Envoy reopens it and resends its identifier).
    """

    def __init__(self, runtime: RuntimeLike, options: FrontDoorOptions) -> None:
        self._runtime = runtime
        self._mapping = MappingOptions(trust_peer_headers=options.trust_peer_headers)

    def methods(self) -> dict[str, grpc.RpcMethodHandler]:
        return {"StreamAccessLogs": grpc.stream_unary_rpc_method_handler(self.stream)}

    async def stream(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        base: Bag = {}
        kind = ""
        async for raw in requests:
            try:
                message = als_pb2.StreamAccessLogsMessage.FromString(raw)
            except DecodeError as exc:
                await reject(context, self._runtime.metrics, FRONT_DOOR, f"malformed StreamAccessLogsMessage: {exc}")
            if message.HasField("identifier"):
                base, kind = stream_base_bag(message.identifier.node, message.identifier.log_name)
            await self.ingest(message, base, kind)
        return _EMPTY

    async def ingest(self, message: als_pb2.StreamAccessLogsMessage, base: Bag, kind: str) -> int:
        """Map and report one message's entries; returns how many bags were reported.

        Works in slices of ``SLICE`` entries and yields to the event loop between them, so a large
        batch does not hold up Checks waiting on the same loop.
        """
        runtime = self._runtime
        manifest = runtime.manifest
        mapping = self._mapping
        build: Callable[[Any], Bag]
        if message.HasField("http_logs"):
            entries: Any = message.http_logs.log_entry
            build = functools.partial(http_entry_bag, base=base, kind=kind, manifest=manifest, options=mapping)
        elif message.HasField("tcp_logs"):
            entries = message.tcp_logs.log_entry
            build = functools.partial(tcp_entry_bag, base=base, kind=kind, manifest=manifest)
        else:
            return 0
        reported = 0
        for start in range(0, len(entries), SLICE):
            bags: list[Bag] = []
            rejected = 0
            for entry in entries[start : start + SLICE]:
                try:
                    bags.append(build(entry))
                except BagError as exc:
                    rejected += 1
                    log.debug("als: dropped entry: %s", exc)
            if rejected:
                runtime.metrics.rejected_bags.labels(FRONT_DOOR).inc(rejected)
            if bags:
                runtime.report(bags, FRONT_DOOR)
                reported += len(bags)
            if start + SLICE < len(entries):
                await asyncio.sleep(0)
        return reported

