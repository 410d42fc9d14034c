"""A cap on a listener's open connections, so a flood of connections cannot grow the collector.

Each open connection holds buffers and parser state before its request is admitted; accepted
faster than answered, they grow the process with the flood. Past the cap a new connection is
answered at once (HTTP 429, ``Connection: close``) and closed, counted in
``mixer_shed_requests_total{reason="connections"}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

_BODY = b'{"error": "overloaded (connections); retry later"}'
REFUSED_HTTP = (b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_BODY), _BODY))


def capped(
    factory: Callable[[], asyncio.BaseProtocol],
    open_connections: Callable[[], int],
    limit: int,
    refused: Callable[[], None],
) -> Callable[[], asyncio.BaseProtocol]:
    """``factory`` for a server, refusing a connection while ``open_connections()`` is at ``limit``
    (the protocol's own count: it knows when a connection is really gone). ``refused`` counts one."""

    def make() -> asyncio.BaseProtocol:
        if open_connections() >= limit:
            refused()
            return _Refused()
        return factory()

    return make


class _Refused(asyncio.Protocol):
    """Answers 429 and closes; whatever the client sent is discarded with the connection."""

    def connection_made(self, transport: Any) -> None:
        transport.write(REFUSED_HTTP)
        transport.close()
