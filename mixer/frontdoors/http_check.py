"""ext_authz over plain HTTP/1.1 (Envoy's ``http_service``) -> ``runtime.check``: the cheapest round trip.

A gRPC Check through grpc.aio costs about 0.2 ms of CPU in the mixer; this door answers the same
question on a bare asyncio protocol (no HTTP framework): Envoy forwards the request's method, path
and headers plus ``x-mixer-check-context`` (the listener's fixed attributes, set by the sidecar
bootstrap); the answer is ``200`` (allow) or the denial's status and message. One request at a time
per connection, as Envoy's HTTP/1.1 pool sends them; a malformed request is answered 400 and the
connection closed. The listeners' limits hold here too: open connections (``max_connections``),
checks in flight (``max_inflight_requests``) and a body's size (``max_body_bytes``); past them the
answer is 429 (counted in ``mixer_shed_requests_total``) or 413.
"""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

from mixer import sdk
from mixer.attributes import Bag, BagError
from mixer.envoy_attributes import MappingOptions, http_check_bag, inbound_check_facts, quota_names
from mixer.envoy_attributes.names import CHECK_CONTEXT_HEADER, QUOTAS_KEY
from mixer.frontdoors.admission import Admission
from mixer.frontdoors.authz import http_status_for
from mixer.frontdoors.base import FrontDoor, FrontDoorOptions, RuntimeLike, log
from mixer.frontdoors.connections import capped

FRONT_DOOR = "ext_authz_http"
MAX_HEAD_BYTES = 64 * 1024  # request line and headers; Envoy's own default limit is 60 KiB
_MAX_CONTEXTS = 1024  # distinct sidecar contexts kept parsed
_MAX_PIPELINED = 16  # requests queued on one connection before it is read no further until answered

_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 413: "Payload Too Large",
            429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error"}


def _answer(status: int, body: str) -> bytes:
    payload = body.encode()
    return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Denied')}\r\ncontent-type: text/plain\r\n"
            f"content-length: {len(payload)}\r\n\r\n").encode() + payload


class HttpCheckFrontDoor(FrontDoor):
    """Serves Envoy's ext_authz HTTP service on ``FrontDoorOptions.check_http_port`` (0: off)."""

    name = FRONT_DOOR
    on_check_loop = True

    def __init__(self, runtime: RuntimeLike, options: FrontDoorOptions) -> None:
        self._runtime = runtime
        self._options = options
        self._mapping = MappingOptions(trust_peer_headers=options.trust_peer_headers)
        self._contexts: dict[str, tuple[Bag, list[str]]] = {}
        self._server: asyncio.Server | None = None
        self.port = options.check_http_port
        limits = options.limits
        self.admission = Admission(limits.max_inflight_bytes, limits.max_inflight_requests)
        self.connections = 0  # open now

    async def start(self) -> None:
        if self._server is not None or not self._options.check_http_port:
            return
        loop = asyncio.get_running_loop()
        shed = self._runtime.metrics.shed_requests.labels(FRONT_DOOR, "connections")
        factory = capped(lambda: _CheckConnection(self), lambda: self.connections,
                         self._options.limits.max_connections, shed.inc)
        self._server = await loop.create_server(
            factory, self._options.host, self._options.check_http_port, reuse_port=self._options.reuse_port or None)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    @property
    def max_body_bytes(self) -> int:
        return self._options.limits.max_body_bytes

    def too_large(self) -> None:
        self._runtime.metrics.rejected_bags.labels(FRONT_DOOR).inc()

    def serves(self) -> list[str]:
        return [f"HTTP ext_authz checks on {self._options.host}:{self.port}"] if self._options.check_http_port else []

    def context(self, text: str) -> tuple[Bag, list[str]]:
        """The fixed facts and quota names a sidecar's context header stands for (parsed once)."""
        known = self._contexts.get(text)
        if known is not None:
            return known
        try:
            raw = json.loads(text) if text else {}
            labels, extensions = raw.get("labels", {}), raw.get("extensions", {})
            if not isinstance(labels, dict) or not isinstance(extensions, dict):
                raise ValueError("labels and extensions must be JSON objects")
            facts = inbound_check_facts({str(k): str(v) for k, v in labels.items()},
                                        {str(k): str(v) for k, v in extensions.items()}, self._runtime.manifest)
        except (ValueError, AttributeError, BagError) as exc:
            raise ValueError(f"bad {CHECK_CONTEXT_HEADER}: {exc}") from None
        quotas = quota_names(str(extensions.get(QUOTAS_KEY, "")))
        if len(self._contexts) >= _MAX_CONTEXTS:
            self._contexts.clear()  # bounded; re-parsed on next use
        self._contexts[text] = (facts, quotas)
        return facts, quotas

    async def admitted(self, head: bytes) -> bytes:
        """``answer`` within the in-flight limit; past it, 429 at once (counted)."""
        size = len(head)
        refused = self.admission.try_enter(size)
        if refused is not None:
            self._runtime.metrics.shed_requests.labels(FRONT_DOOR, refused).inc()
            return _answer(429, f"overloaded ({refused}); retry later\n")
        try:
            return await self.answer(head)
        finally:
            self.admission.leave(size)

    async def answer(self, head: bytes) -> bytes:
        """One authorization request's head (request line and headers) -> the whole HTTP answer."""
        try:
            method, path, headers = _parse_head(head)
            facts, extra_quotas = self.context(headers.pop(CHECK_CONTEXT_HEADER, ""))
            bag = http_check_bag(method, path, headers, facts, self._mapping)
        except ValueError as exc:
            self._runtime.metrics.rejected_bags.labels(FRONT_DOOR).inc()
            log.debug("%s: rejected: %s", FRONT_DOOR, exc)
            return _answer(400, f"{exc}\n")
        names = [*self._options.authz_quotas, *extra_quotas]
        quotas = {name: sdk.QuotaArgs(amount=1) for name in names}
        result = (await self._runtime.check(bag, quotas, FRONT_DOOR)).verdict()
        if result.ok:
            return _OK
        return _answer(http_status_for(result), result.body or (result.message + "\n" if result.message else ""))


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x request line: {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name:
            raise ValueError(f"malformed header line: {line[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


class _CheckConnection(asyncio.Protocol):
    """One connection from Envoy: requests parsed as they arrive, answered in order, one at a time."""

    def __init__(self, door: HttpCheckFrontDoor) -> None:
        self._door = door
        self._buffer = bytearray()
        self._heads: collections.deque[bytes] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self._busy = False
        self._skip = 0  # body bytes still to drop (Envoy sends none unless told to)

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        self._door.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._heads.clear()
        self._door.connections -= 1

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            if self._skip:
                dropped = min(self._skip, len(buffer))
                del buffer[:dropped]
                self._skip -= dropped
                if self._skip:
                    return
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    self._fail(431, "request head too large\n")
                return
            head = bytes(buffer[:end])
            del buffer[:end + 4]
            self._skip = _content_length(head)
            if self._skip < 0:
                self._fail(400, "bad content-length\n")
                return
            if self._skip > self._door.max_body_bytes:
                self._door.too_large()
                self._fail(413, f"request body larger than the limit of {self._door.max_body_bytes} bytes\n")
                return
            self._heads.append(head)
            if len(self._heads) >= _MAX_PIPELINED and self._transport is not None:
                self._transport.pause_reading()  # what it sends next waits in the kernel, not here
            if not self._busy:
                self._next()

    def _next(self) -> None:
        head = self._heads.popleft()
        if len(self._heads) == _MAX_PIPELINED - 1 and self._transport is not None:
            self._transport.resume_reading()
        self._busy = True
        task = asyncio.get_running_loop().create_task(self._door.admitted(head))
        task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Task[bytes]) -> None:
        self._busy = False
        if self._transport is None:
            return
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                log.error("%s: check failed: %r", FRONT_DOOR, task.exception())
            self._fail(500, "check failed\n")  # a denial: a broken check never silently allows
            return
        self._transport.write(task.result())
        if self._heads:
            self._next()

    def _fail(self, status: int, body: str) -> None:
        if self._transport is not None:
            self._transport.write(_answer(status, body))
            self._transport.close()
            self._transport = None


def _content_length(head: bytes) -> int:
    lowered = head.lower()
    at = lowered.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    value = lowered[at + 17:].split(b"\r\n", 1)[0].strip()
    return int(value) if value.isdigit() else -1
