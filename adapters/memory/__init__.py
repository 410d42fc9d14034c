"""The memory adapter: a recording test double that keeps every instance it receives.

Params: ``maxInstances`` (default 10000; older instances are dropped and counted past it),
``path`` (optional: also append each instance as one JSON line, so another process can read them).
Checks are answered OK and recorded too. Find a live handler through the runtime's snapshot:
``runtime.snapshot.slots["NAME.handler.NAMESPACE"].handler.instances``.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import orjson

from mixer.attributes import value_to_json, type_of_value
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

__all__ = ["MemoryAdapter", "MemoryHandler", "MemoryParams"]


@dataclass(frozen=True)
class MemoryParams:
    max_instances: int = 10_000
    path: str = ""


def instance_to_json(instance: Any) -> dict[str, Any]:
    """A recorded instance as plain JSON: ``{"name", "template", "fields"}`` (metrics add value/dimensions)."""
    if isinstance(instance, MetricInstance):
        return {
            "name": instance.name,
            "template": "metric",
            "value": _json(instance.value),
            "dimensions": [_json(d) for d in instance.dimensions],
        }
    return {
        "name": instance.name,
        "template": instance.template,
        "fields": {k: _json(v) for k, v in instance.fields.items()},
    }


def _json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _json(v) for k, v in value.items()}
    try:
        return value_to_json(type_of_value(value), value)
    except TypeError:
        return repr(value)


class MemoryHandler(Handler):
    """Keeps instances in ``instances`` (bounded), in arrival order."""

    def __init__(self, params: MemoryParams, env: Env) -> None:
        self.params = params
        self.env = env
        self.instances: collections.deque[Any] = collections.deque()
        self._file: IO[bytes] | None = None

    async def start(self) -> None:
        if self.params.path and self._file is None:
            self._file = open(self.params.path, "ab")  # noqa: SIM115 - closed in close()

    async def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def _record(self, instances: Sequence[Any]) -> None:
        self.instances.extend(instances)
        overflow = len(self.instances) - self.params.max_instances
        if overflow > 0:
            for _ in range(overflow):
                self.instances.popleft()
            self.env.count_dropped(overflow, "memory_full")
        if self._file is not None:
            self._file.write(b"".join(orjson.dumps(instance_to_json(i)) + b"\n" for i in instances))
            self._file.flush()

    def handle_metric(self, instances: Sequence[MetricInstance]) -> None:
        self._record(instances)

    def handle_logentry(self, instances: Sequence[Instance]) -> None:
        self._record(instances)

    def handle_tracespan(self, instances: Sequence[Instance]) -> None:
        self._record(instances)

    def handle_reportnothing(self, instances: Sequence[Instance]) -> None:
        self._record(instances)

    async def check_authorization(self, instance: Instance) -> CheckResult:
        self._record([instance])
        return CheckResult()

    async def check_listentry(self, instance: Instance) -> CheckResult:
        self._record([instance])
        return CheckResult()

    async def check_checknothing(self, instance: Instance) -> CheckResult:
        self._record([instance])
        return CheckResult()

    async def allocate_quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        self._record([instance])
        return QuotaResult(args.amount)

    def of(self, template: str) -> list[Any]:
        """The recorded instances of one template."""
        return [
            i for i in self.instances
            if (template == "metric" and isinstance(i, MetricInstance)) or getattr(i, "template", None) == template
        ]


class MemoryAdapter(Adapter):
    name = "memory"
    templates = frozenset(
        {"metric", "logentry", "tracespan", "reportnothing", "authorization", "listentry", "checknothing", "quota"}
    )

    def parse_params(self, raw: Mapping[str, Any]) -> MemoryParams:
        problems = unknown_fields(raw, ("maxInstances", "path"))
        max_instances = raw.get("maxInstances", 10_000)
        if isinstance(max_instances, bool) or not isinstance(max_instances, int) or max_instances < 1:
            problems.append(("maxInstances", f"must be a positive integer, got {max_instances!r}"))
        path = raw.get("path", "")
        if not isinstance(path, str):
            problems.append(("path", "must be a string"))
        if problems:
            raise ParamsError(problems)
        return MemoryParams(max_instances=max_instances, path=path)

    def build(self, params: Any, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        return MemoryHandler(params, env)
