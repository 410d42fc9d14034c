"""Sending serialized OTLP export requests over gRPC (grpc.aio) or HTTP/protobuf (aiohttp).

Failures map to the push helper's errors as the OTLP specification says which may be retried:
gRPC CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and
DATA_LOSS, HTTP 429, 502, 503 and 504 and any connection failure are retried (honouring the
server's RetryInfo / Retry-After); any other answer is permanent. Nothing here blocks the loop.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from typing import Any

import aiohttp
import grpc
from google.rpc import error_details_pb2, status_pb2

from adapters.otlp.config import OtlpParams
from mixer.push import PermanentError, RetryableError

SIGNALS = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}
_RETRYABLE = frozenset({
    grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS,
})
_RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
_PROTOBUF = "application/x-protobuf"
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class Transport:
    """``export(signal, body)`` -> the response's bytes; ``start``/``close`` own the connection."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def export(self, signal: str, body: bytes, timeout: float) -> bytes:
        raise NotImplementedError


def transport_for(params: OtlpParams) -> Transport:
    return GrpcTransport(params) if params.protocol == "grpc" else HttpTransport(params)


class GrpcTransport(Transport):
    def __init__(self, params: OtlpParams) -> None:
        self._params = params
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[str, Any] = {}
        self._metadata = tuple(params.headers.items())

    async def start(self) -> None:
        if self._channel is not None:
            return
        compression = grpc.Compression.Gzip if self._params.compression == "gzip" else None
        self._channel = grpc.aio.insecure_channel(
            self._params.endpoint,
            options=[("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
                     ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                     # gRPC's own reconnect backoff grows to 2 minutes: after a long outage every
                     # retry would fail fast long after the backend is back. Ours paces the retries.
                     ("grpc.initial_reconnect_backoff_ms", 250),
                     ("grpc.max_reconnect_backoff_ms", max(int(self._params.delivery.retry_max_interval * 1000), 1000))],
            compression=compression,
        )
        # No serializers: the bodies are built as bytes already, and the answers are parsed by the caller.
        self._calls = {signal: self._channel.unary_unary(f"/{service}/Export") for signal, service in SIGNALS.items()}

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    async def export(self, signal: str, body: bytes, timeout: float) -> bytes:
        if self._channel is None:
            raise RuntimeError("export before start")
        try:
            answer: bytes = await self._calls[signal](body, timeout=timeout, metadata=self._metadata or None)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            message = f"gRPC {code.name}: {exc.details()}"
            if code in _RETRYABLE:
                raise RetryableError(message, _grpc_retry_after(exc.trailing_metadata())) from None
            raise PermanentError(message) from None
        return answer


def _grpc_retry_after(metadata: Any) -> float | None:
    """The server's google.rpc.RetryInfo delay, when its status details carry one."""
    for key, value in metadata or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:  # noqa: BLE001 - a malformed detail only loses the hint
            return None
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


class HttpTransport(Transport):
    def __init__(self, params: OtlpParams) -> None:
        self._params = params
        self._session: aiohttp.ClientSession | None = None
        self._headers: dict[str, str] = {**params.headers, "Content-Type": _PROTOBUF}
        if params.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def export(self, signal: str, body: bytes, timeout: float) -> bytes:
        if self._session is None:
            raise RuntimeError("export before start")
        if self._params.compression == "gzip":
            body = gzip.compress(body, compresslevel=5)
        url = f"{self._params.endpoint}/v1/{signal}"
        try:
            async with self._session.post(
                url, data=body, headers=self._headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as reply:
                answer = await reply.read()
                if reply.status == 200:
                    return answer
                message = f"HTTP {reply.status} from {url}: {_http_error_text(answer, reply.content_type)}"
                if reply.status in _RETRYABLE_HTTP:
                    raise RetryableError(message, _retry_after(reply.headers))
                raise PermanentError(message)
        except aiohttp.ClientError as exc:  # refused, reset, DNS: the backend may come back
            raise RetryableError(f"{type(exc).__name__}: {exc}") from None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After", "")
    try:
        return float(value) if value else None
    except ValueError:
        return None  # an HTTP date: the backoff decides


def _http_error_text(body: bytes, content_type: str) -> str:
    if content_type == _PROTOBUF:
        try:
            return str(status_pb2.Status.FromString(body).message)
        except Exception:  # noqa: BLE001 - fall back to the raw text
            pass
    return body[:200].decode(errors="replace")
