"""``envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs`` -> ``runtime.report`` per message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2
from google.protobuf.message import DecodeError

from mixer.attributes import Bag, BagError
from mixer.frontdoors.base import MAX_BATCH, FrontDoorOptions, RuntimeLike, log, reject
from mixer.frontdoors.envoy_attributes import MappingOptions, http_entry_bag, stream_base_bag, tcp_entry_bag

FRONT_DOOR = "als"
SERVICE = "envoy.service.accesslog.v3.AccessLogService"
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
                raise AssertionError("unreachable") from None
            if message.HasField("identifier"):
                base, kind = stream_base_bag(message.identifier.node, message.identifier.log_name)
            self.ingest(message, base, kind)
        return _EMPTY

    def ingest(self, message: als_pb2.StreamAccessLogsMessage, base: Bag, kind: str) -> int:
        """Map and report one message's entries; returns how many bags were reported."""
        runtime = self._runtime
        manifest = runtime.manifest
        bags: list[Bag] = []
        rejected = 0
        entries: Any
        if message.HasField("http_logs"):
            for entry in message.http_logs.log_entry:
                try:
                    bags.append(http_entry_bag(entry, base, kind, manifest, self._mapping))
                except BagError as exc:
                    rejected += 1
                    log.debug("als: dropped entry: %s", exc)
        elif message.HasField("tcp_logs"):
            for entries in message.tcp_logs.log_entry:
                try:
                    bags.append(tcp_entry_bag(entries, base, kind, manifest))
                except BagError as exc:
                    rejected += 1
                    log.debug("als: dropped entry: %s", exc)
        if rejected:
            runtime.metrics.rejected_bags.labels(FRONT_DOOR).inc(rejected)
        for start in range(0, len(bags), MAX_BATCH):
            runtime.report(bags[start : start + MAX_BATCH], FRONT_DOOR)
        return len(bags)
