"""The no-op adapter: accepts every dispatched template and does nothing (benchmarks, dry runs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mixer.sdk import Adapter, CheckResult, Env, Handler, Instance, InstanceSchema, MetricInstance, QuotaArgs, QuotaResult
from mixer.templates import TEMPLATES, Variety

__all__ = ["NoopAdapter", "NoopHandler"]


class NoopHandler(Handler):
    def handle_metric(self, instances: Sequence[MetricInstance]) -> None:
        return None

    def handle_logentry(self, instances: Sequence[Instance]) -> None:
        return None

    def handle_tracespan(self, instances: Sequence[Instance]) -> None:
        return None

    def handle_reportnothing(self, instances: Sequence[Instance]) -> None:
        return None

    async def check_authorization(self, instance: Instance) -> CheckResult:
        return CheckResult()

    async def check_listentry(self, instance: Instance) -> CheckResult:
        return CheckResult()

    async def check_checknothing(self, instance: Instance) -> CheckResult:
        return CheckResult()

    async def allocate_quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        return QuotaResult(args.amount)


class NoopAdapter(Adapter):
    name = "noop"
    templates = frozenset(name for name, t in TEMPLATES.items() if t.variety is not Variety.ATTRIBUTES)

    def build(self, params: Any, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        return NoopHandler()
