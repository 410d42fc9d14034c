"""The memory adapter: records every instance it receives; the test double for other parts.

Params: ``limit`` (records kept per template, oldest dropped and counted; default 100000).
Checks answer OK and quotas grant what was asked, so tests can observe the instances built.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from mixer.sdk import (
    Adapter,
    CheckResult,
    Env,
    Handler,
    Instance,
    InstanceSchema,
    MetricInstance,
    ParamsError,
    QuotaArgs,
    QuotaResult,
    unknown_fields,
)
from mixer.templates import TEMPLATES

__all__ = ["MemoryAdapter", "MemoryHandler"]


class MemoryHandler(Handler):
    def __init__(self, env: Env, instances: Mapping[str, InstanceSchema], limit: int) -> None:
        self.env = env
        self.schemas = dict(instances)
        self.limit = limit
        self.records: dict[str, deque[Any]] = {name: deque() for name in TEMPLATES}
        self.batches = 0
        self.started = False
        self.closed = 0

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed += 1

    def _keep(self, template: str, items: Sequence[Any]) -> None:
        kept = self.records[template]
        kept.extend(items)
        overflow = len(kept) - self.limit
        if overflow > 0:
            for _ in range(overflow):
                kept.popleft()
            self.env.count_dropped(overflow, "memory_limit")

    def metrics_by_dimension(self) -> list[dict[str, Any]]:
        """Recorded metric instances as dicts: name, value and named dimensions."""
        out = []
        for metric in self.records["metric"]:
            names = self.schemas[metric.name].dimension_names
            out.append({"name": metric.name, "value": metric.value, **dict(zip(names, metric.dimensions))})
        return out

    def handle_metric(self, instances: Sequence[MetricInstance]) -> None:
        self.batches += 1
        self._keep("metric", instances)

    def handle_logentry(self, instances: Sequence[Instance]) -> None:
        self.batches += 1
        self._keep("logentry", instances)

    def handle_tracespan(self, instances: Sequence[Instance]) -> None:
        self.batches += 1
        self._keep("tracespan", instances)

    def handle_reportnothing(self, instances: Sequence[Instance]) -> None:
        self.batches += 1
        self._keep("reportnothing", instances)

    async def check_authorization(self, instance: Instance) -> CheckResult:
        self._keep("authorization", [instance])
        return CheckResult()

    async def check_listentry(self, instance: Instance) -> CheckResult:
        self._keep("listentry", [instance])
        return CheckResult()

    async def check_checknothing(self, instance: Instance) -> CheckResult:
        self._keep("checknothing", [instance])
        return CheckResult()

    async def allocate_quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        self._keep("quota", [instance])
        return QuotaResult(args.amount)


class MemoryAdapter(Adapter):
    name = "memory"
    templates = frozenset(TEMPLATES)

    def parse_params(self, raw: Mapping[str, Any]) -> int:
        problems = unknown_fields(raw, ("limit",))
        limit = raw.get("limit", 100_000)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            problems.append(("limit", f"must be a positive integer, got {limit!r}"))
        if problems:
            raise ParamsError(problems)
        return int(limit)

    def build(self, params: int, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        return MemoryHandler(env, instances, params)
