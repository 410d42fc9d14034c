"""The prologue every front door shares: decode, map to bags, reject each bad bag alone, report the rest.

A protocol-specific door only says how to decode its message and how to turn one item into a bag;
counting rejections, naming the bad bag's index and attribute, slicing large batches and yielding
to the event loop between slices happen here, the same way for every door.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from google.protobuf.message import DecodeError, Message

from mixer.attributes import Bag, BagError
from mixer.frontdoors.base import RuntimeLike, log

T = TypeVar("T")
R = TypeVar("R")
M = TypeVar("M", bound=Message)


class BadRequest(ValueError):
    """A request refused as a whole or in part: HTTP 400, gRPC INVALID_ARGUMENT.

    ``uncounted`` is how many bags it rejects that are not yet in ``mixer_rejected_bags_total``
    (a refused request counts as one; a partial report has counted its bags already). ``details``
    is merged into an HTTP JSON answer.
    """

    def __init__(self, message: str, *, uncounted: int = 1, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.uncounted = uncounted
        self.details = dict(details or {})


class Unavailable(RuntimeError):
    """Accepted bags could not be handed over (a Kafka front door could not publish them): HTTP 503,
    gRPC UNAVAILABLE. The caller learns that nothing after the bags already reported was kept."""


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int  # the bag's position in the request
    error: str  # names the attribute

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "error": self.error}


@dataclass
class ReportOutcome:
    accepted: int = 0
    instances: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "instances": self.instances}

    def raise_for_rejections(self) -> None:
        """Fail the call naming every bad bag; the good ones were reported already."""
        if self.rejected:
            messages = "; ".join(f"bag {r.index}: {r.error}" for r in self.rejected)
            raise BadRequest(
                f"accepted {self.accepted}; rejected: {messages}",
                uncounted=0,
                details={**self.to_json(), "rejected": [r.to_json() for r in self.rejected]},
            )


def decode_proto(message_type: type[M], raw: bytes) -> M:
    try:
        message: M = message_type.FromString(raw)
    except DecodeError as exc:
        raise BadRequest(f"malformed {message_type.__name__}: {exc}") from None
    return message


def decode_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson places every encoding error at "line 1 column 1": say where the bad byte is.
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise BadRequest(f"body is not valid UTF-8: {bad.reason} at byte {bad.start}") from None
        raise BadRequest(f"bad JSON: {exc}") from None


def describe_bag_error(exc: BagError) -> str:
    return f"bad attribute: {exc}"


def _unmappable(exc: Exception) -> str:
    """A mapping that failed other than with BagError: a value the mapping did not foresee.

    Still only that item's fault: it is refused alone, never the request or the server.
    """
    log.debug("unmappable item", exc_info=exc)
    return f"cannot map: {type(exc).__name__}: {exc}"


def map_one(build: Callable[[T], R], item: T) -> R:
    """Map one item (a check's bag and what goes with it): a bad value refuses the request, naming
    the attribute."""
    try:
        return build(item)
    except BagError as exc:
        raise BadRequest(describe_bag_error(exc)) from None
    except Exception as exc:  # noqa: BLE001 - see _unmappable
        raise BadRequest(_unmappable(exc)) from None


async def report_each(
    runtime: RuntimeLike, items: Sequence[T], build: Callable[[T], Bag], front_door: str, *, limit: int
) -> ReportOutcome:
    """Map every item to a bag and report the good ones; a bad item is rejected alone and counted.

    A request of more than ``limit`` items is refused whole (``Limits.max_bags_per_request``): what
    one request may cost is bounded. Works in slices of ``runtime.batch_size`` and yields to the
    event loop between them, so a large batch does not hold up the loop's other requests.
    """
    if len(items) > limit:
        raise BadRequest(
            f"{len(items)} bags in one request; the limit is {limit} (--max-bags-per-request)",
            uncounted=len(items),
            details={"limit": limit},
        )
    outcome = ReportOutcome()
    step = runtime.batch_size
    for start in range(0, len(items), step):
        if start:
            await asyncio.sleep(0)
        bags: list[Bag] = []
        for index, item in enumerate(items[start : start + step], start):
            try:
                bags.append(build(item))
            except BagError as exc:
                outcome.rejected.append(Rejection(index, str(exc)))
            except Exception as exc:  # noqa: BLE001 - see _unmappable
                outcome.rejected.append(Rejection(index, _unmappable(exc)))
        await asyncio.sleep(0)  # mapping a slice costs about what dispatching it does: let others in between
        if bags:
            outcome.instances += await runtime.submit(bags, front_door)
            outcome.accepted += len(bags)
    if outcome.rejected:
        runtime.metrics.rejected_bags.labels(front_door).inc(len(outcome.rejected))
    return outcome
