"""The adapter SDK: what an adapter implements and what the runtime hands it.

An *adapter* is a factory found through the ``mixer.adapters`` entry-point group. It validates its
``params`` and builds a *handler* for one ``kind: handler`` config document. Handlers serve
instances: report kinds synchronously per batch (push adapters only enqueue), check kinds as
coroutines (a quota may live in Redis).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from mixer.selfmetrics import SelfMetrics

# google.rpc.Code values used by check answers.
OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16

DEFAULT_VALID_DURATION = dt.timedelta(minutes=1)
DEFAULT_VALID_USE_COUNT = 10000


class MetricInstance(NamedTuple):
    """One metric point. ``dimensions`` is ordered as the schema's ``dimension_names``."""

    name: str
    value: Any
    dimensions: tuple[Any, ...]
    monitored_resource_dimensions: tuple[Any, ...] = ()


class Instance(NamedTuple):
    """Any other instance: ``fields`` maps template field names to values (maps stay dicts)."""

    name: str
    template: str
    fields: Mapping[str, Any]


class EncodedAttributes(dict[str, str]):
    """A STRING_MAP value that also carries the OTLP encoding its entries arrived in, so an adapter
    sending them on as OTLP span attributes copies bytes instead of encoding each entry again.

    ``wire`` maps each key whose text is not empty to its ``Span.attributes`` field (tag, length,
    KeyValue), in the map's order. Read it as a plain map anywhere else; like every bag value it is
    never mutated (a rule that wants other entries builds another map, which has no ``wire``).
    """

    __slots__ = ("wire",)

    def __init__(self, entries: Mapping[str, str] | None = None, wire: Mapping[str, bytes] | None = None) -> None:
        super().__init__(entries or {})
        self.wire: Mapping[str, bytes] = wire or {}


@dataclass(frozen=True, slots=True)
class InstanceSchema:
    """What a handler learns at build time about an instance it will receive."""

    name: str  # fully qualified: "requestcount.instance.istio-system"
    template: str
    dimension_names: tuple[str, ...] = ()  # metric and quota dimensions, in instance order
    monitored_resource_type: str = ""
    monitored_resource_dimension_names: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)  # the instance's raw params


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A check verdict. ``http_status``/``headers``/``body`` refine how a proxy denies or allows."""

    status_code: int = OK
    message: str = ""
    valid_duration: dt.timedelta = DEFAULT_VALID_DURATION
    valid_use_count: int = DEFAULT_VALID_USE_COUNT
    http_status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code == OK


@dataclass(frozen=True, slots=True)
class QuotaArgs:
    amount: int = 1
    best_effort: bool = False
    deduplication_id: str = ""


@dataclass(frozen=True, slots=True)
class QuotaResult:
    """A quota allocation. Handlers that know their window also tell ``remaining`` (after this
    allocation), ``limit`` (per window) and ``window`` (its length); the rate limit front door turns
    them into Envoy's limit_remaining / current_limit (the x-ratelimit-* headers)."""

    granted_amount: int
    valid_duration: dt.timedelta = dt.timedelta(0)
    status_code: int = OK
    message: str = ""
    remaining: int | None = None
    limit: int | None = None
    window: dt.timedelta | None = None


def quota_names(qualified: str) -> tuple[str, ...]:
    """The names a quota instance goes by, most specific first: a check may ask for it, and a quota
    adapter may configure it, as ``requestcount.instance.istio-system`` (its qualified name),
    ``requestcount`` or ``requestcount.istio-system``."""
    parts = qualified.split(".")
    if len(parts) >= 3:
        return (qualified, parts[0], f"{parts[0]}.{parts[2]}")
    return (qualified, parts[0])


class ParamsError(ValueError):
    """Bad handler params: every problem as (path below ``params``, message)."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{path}: {msg}" if path else msg for path, msg in self.problems))


@dataclass
class Env:
    """What a handler may use from the runtime; no globals."""

    handler_name: str
    logger: logging.Logger
    metrics: SelfMetrics
    clock: Callable[[], float] = time.time

    def count_dropped(self, amount: int, reason: str) -> None:
        """Count instances this handler could not deliver (never drop silently)."""
        self.metrics.dropped_instances.labels(self.handler_name, reason).inc(amount)


class Handler:
    """Base class: override ``start``/``close``, and implement the protocol of each template served.

    ``close`` must be safe to call twice and without ``start``. Which methods a handler needs is
    said by the protocols below (``MetricHandler`` for ``metric`` and so on); the runtime binds them
    when it builds a snapshot, so a handler missing one fails at config load, not per batch.
    """

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def take_over(self, previous: Handler) -> None:
        """Carry state over from the handler this one replaces (same name and adapter; its params or
        instances changed), before ``start``. A prometheus handler keeps the series whose definition
        did not change, so a reload does not reset counters. ``previous`` is closed afterwards, once
        in-flight work drains. Default: nothing carried."""
        return None

    def report_room(self, template: str) -> int | None:
        """How many ``template`` instances this handler would take now; None (the default): no bound.
        At 0 (a push handler whose queue is full while its backend is down) the runtime builds none
        for a rule whose every action comes here: it only evaluates the rule's ``match`` and hands
        over how many matched (``refuse_reports``), so a backlog costs no instance building."""
        return None

    def refuse_reports(self, template: str, count: int) -> None:
        """``count`` instances of ``template`` were not built because ``report_room`` said 0: count
        them as dropped, as the handler would have had it received them. Default: nothing."""
        return None


# Report protocols: called once per batch with every instance of that template; must not block
# (a push adapter only enqueues).
@runtime_checkable
class MetricHandler(Protocol):
    def handle_metric(self, instances: Sequence[MetricInstance]) -> None: ...


@runtime_checkable
class LogEntryHandler(Protocol):
    def handle_logentry(self, instances: Sequence[Instance]) -> None: ...


@runtime_checkable
class TraceSpanHandler(Protocol):
    def handle_tracespan(self, instances: Sequence[Instance]) -> None: ...


@runtime_checkable
class ReportNothingHandler(Protocol):
    def handle_reportnothing(self, instances: Sequence[Instance]) -> None: ...


# Check protocols: one instance per call; the verdicts of every matching handler are combined.
@runtime_checkable
class AuthorizationHandler(Protocol):
    async def check_authorization(self, instance: Instance) -> CheckResult: ...


@runtime_checkable
class ListEntryHandler(Protocol):
    async def check_listentry(self, instance: Instance) -> CheckResult: ...


@runtime_checkable
class CheckNothingHandler(Protocol):
    async def check_checknothing(self, instance: Instance) -> CheckResult: ...


@runtime_checkable
class QuotaHandler(Protocol):
    async def allocate_quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult: ...


class Adapter:
    """Factory for handlers; subclasses are registered under ``mixer.adapters`` entry points."""

    name: ClassVar[str] = ""
    templates: ClassVar[frozenset[str]] = frozenset()

    def parse_params(self, raw: Mapping[str, Any]) -> Any:
        """Validate raw params; raise ParamsError listing every problem. Default: accept none."""
        if raw:
            raise ParamsError([(key, "unknown field") for key in raw])
        return None

    def build(self, params: Any, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        raise NotImplementedError


def unknown_fields(raw: Mapping[str, Any], allowed: Sequence[str], path: str = "") -> list[tuple[str, str]]:
    """Problems for keys of ``raw`` not in ``allowed``, for ParamsError."""
    prefix = f"{path}." if path else ""
    return [
        (f"{prefix}{key}", f"unknown field (known: {', '.join(allowed)})")
        for key in raw
        if key not in allowed
    ]
