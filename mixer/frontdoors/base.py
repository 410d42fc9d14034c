"""What the front doors need from the runtime, and their shared options and error handling."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import grpc

from mixer.attributes import Bag, BagError, ValueType
from mixer.sdk import QuotaArgs
from mixer.selfmetrics import SelfMetrics

log = logging.getLogger("mixer.frontdoors")


class RuntimeLike(Protocol):
    """The slice of ``mixer.runtime.Runtime`` the front doors call."""

    @property
    def manifest(self) -> Mapping[str, ValueType]: ...

    @property
    def metrics(self) -> SelfMetrics: ...

    def report(self, bags: Sequence[Bag], front_door: str) -> Any: ...

    async def check(self, bag: Bag, quotas: Mapping[str, QuotaArgs], front_door: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class FrontDoorOptions:
    """Settings of the gRPC front doors (``mixer serve`` flags)."""

    host: str = "127.0.0.1"
    port: int = 9091
    trust_peer_headers: bool = False  # believe x-mixer-workload/-namespace (spoofable; see docs)
    authz_quotas: tuple[str, ...] = ()  # quota instances every ext_authz Check allocates (amount 1)
    reuse_port: bool = False  # SO_REUSEPORT, for ``--workers``
    max_concurrent_rpcs: int | None = 4096  # bounds in-flight work; beyond it gRPC answers RESOURCE_EXHAUSTED


async def reject(
    context: grpc.aio.ServicerContext[Any, Any], metrics: SelfMetrics, front_door: str, message: str
) -> NoReturn:
    """Count a malformed bag and end the call with INVALID_ARGUMENT (raises AbortError)."""
    metrics.rejected_bags.labels(front_door).inc()
    log.debug("%s: rejected: %s", front_door, message)
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
    raise AssertionError("grpc.aio's abort always raises")


def describe_bag_error(exc: BagError) -> str:
    return f"bad attribute: {exc}"
