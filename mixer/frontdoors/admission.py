"""Admission: how much a listener takes on at once, so overload is refused rather than buffered.

A request is admitted with its size (the body's Content-Length, a gRPC message's length) and leaves
when answered. Small requests (checks) are bounded only by count; large ones (reports) also by the
bytes in flight, so a flood of big reports is shed while checks keep being answered.
"""

from __future__ import annotations

from dataclasses import dataclass

# At most this many bytes, a request is never refused for bytes: checks are small and must go through.
SMALL_REQUEST_BYTES = 64 * 1024


@dataclass
class Admission:
    max_bytes: int
    max_requests: int
    bytes: int = 0
    requests: int = 0

    def try_enter(self, size: int, *, small_pass: bool = True) -> str | None:
        """Admit a request of ``size`` bytes, or say why not (the ``reason`` label of the shed count).

        ``small_pass=False`` (a report method, which is never a check) admits even a small request
        by bytes: a flood of small reports is bounded by bytes too."""
        if self.requests >= self.max_requests:
            return "inflight_requests"
        if (size > SMALL_REQUEST_BYTES or not small_pass) and self.bytes + size > self.max_bytes:
            return "inflight_bytes"
        self.bytes += size
        self.requests += 1
        return None

    def leave(self, size: int) -> None:
        self.bytes -= size
        self.requests -= 1
