"""The snapshot: compiled config plus built handlers and the per-rule evaluation plans."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from mixer.config import CallPolicy, CompiledConfig, CompiledHandler, CompiledInstance
from mixer.expr import Expression, Reference
from mixer.runtime._binding import CheckCall, QuotaCall, ReportCall, check_call, quota_call, report_call
from mixer.runtime._cache import CheckCache
from mixer.runtime._plan import RulePlan, build_plan
from mixer.sdk import Env, Handler, InstanceSchema, quota_names
from mixer.selfmetrics import DispatchSeries, SelfMetrics
from mixer.templates import Variety


@dataclass
class HandlerSlot:
    """A built handler with its identity key (reused across snapshots when the key is unchanged)."""

    name: str
    adapter_name: str
    key: bytes
    handler: Handler
    started: bool = False
    calls: CallPolicy = field(default_factory=CallPolicy)  # timeout and failure policy of check/quota calls
    serves_checks: bool = False  # has check or quota instances: started, called and closed on the check loop


@dataclass(frozen=True, slots=True)
class ReportSink:
    """Where one (handler, template) pair's report instances go in a batch."""

    slot: HandlerSlot
    template: str
    call: ReportCall
    series: DispatchSeries  # what each call records (mixer.selfmetrics)


@dataclass(frozen=True, slots=True)
class CheckSink:
    slot: HandlerSlot
    template: str
    call: CheckCall
    series: DispatchSeries  # what each call records (mixer.selfmetrics)


@dataclass(frozen=True, slots=True)
class QuotaSink:
    slot: HandlerSlot
    template: str
    call: QuotaCall
    series: DispatchSeries  # what each call records (mixer.selfmetrics)


Sink = ReportSink | CheckSink | QuotaSink


@dataclass
class Snapshot:
    config: CompiledConfig
    slots: dict[str, HandlerSlot]
    report_sinks: list[ReportSink]
    report_plans: list[RulePlan]
    check_sinks: list[CheckSink]
    check_plans: list[RulePlan]
    quota_sinks: list[QuotaSink]
    quota_plans: list[RulePlan]
    check_cache: CheckCache | None = None  # per snapshot: a config swap starts empty
    # Each quota instance's names a check may ask it by (``mixer.sdk.quota_names``), made once, not per allocation.
    quota_aliases: Mapping[str, frozenset[str]] = field(default_factory=dict)
    inflight: int = 0  # checks running on this snapshot (on the check loop; read when it retires)


def handler_key(handler: CompiledHandler, schemas: Mapping[str, InstanceSchema]) -> bytes:
    """Identity of a handler's config: adapter, params and the instances it receives."""
    shape = {
        "adapter": handler.adapter_name,
        "params": handler.raw_params,
        "calls": [handler.calls.timeout, handler.calls.fail_open],
        "instances": {
            name: [s.template, list(s.dimension_names), s.monitored_resource_type, s.params]
            for name, s in sorted(schemas.items())
        },
    }
    return orjson.dumps(shape, option=orjson.OPT_SORT_KEYS, default=str)


def build_snapshot(
    config: CompiledConfig,
    metrics: SelfMetrics,
    previous: Mapping[str, HandlerSlot] | None = None,
    check_cache_size: int = 0,
) -> Snapshot:
    """Build handlers referenced by rules (reusing ``previous`` slots with the same key) and plans.

    Handlers are built but not started; the runtime starts new slots before swapping in.
    """
    schemas: dict[str, dict[str, InstanceSchema]] = defaultdict(dict)
    for rule in config.rules:
        for action in rule.actions:
            for instance in action.instances:
                schemas[action.handler.name][instance.name] = instance.schema
    slots: dict[str, HandlerSlot] = {}
    for name, handler_schemas in schemas.items():
        compiled = config.handlers[name]
        key = handler_key(compiled, handler_schemas)
        old = (previous or {}).get(name)
        if old is not None and old.key == key:
            slots[name] = old
            continue
        env = Env(
            handler_name=name,
            logger=logging.getLogger(f"mixer.adapter.{compiled.adapter_name}"),
            metrics=metrics,
        )
        built = compiled.adapter.build(compiled.params, env, handler_schemas)
        if old is not None and old.adapter_name == compiled.adapter_name:
            built.take_over(old.handler)
        slots[name] = HandlerSlot(name, compiled.adapter_name, key, built, calls=compiled.calls)

    plans: dict[Variety, list[RulePlan]] = {v: [] for v in Variety}
    sinks: dict[Variety, list[Sink]] = {v: [] for v in Variety}
    sink_index: dict[tuple[Variety, str, str], int] = {}
    for rule in config.rules:
        routes: dict[Variety, list[tuple[int, CompiledInstance]]] = defaultdict(list)
        for action in rule.actions:
            slot = slots[action.handler.name]
            for instance in action.instances:
                template = instance.template
                key3 = (template.variety, slot.name, template.name)
                if key3 not in sink_index:
                    sink_index[key3] = len(sinks[template.variety])
                    sinks[template.variety].append(_sink(slot, template.name, template.variety, metrics))
                routes[template.variety].append((sink_index[key3], instance))
                if template.variety is not Variety.REPORT:
                    slot.serves_checks = True  # fixed by the slot's key (its instances), so never unset
        for variety, rule_routes in routes.items():
            plans[variety].append(build_plan(rule.name, rule.match, rule_routes))
    return Snapshot(
        config=config,
        slots=slots,
        report_sinks=[s for s in sinks[Variety.REPORT] if isinstance(s, ReportSink)],
        report_plans=plans[Variety.REPORT],
        check_sinks=[s for s in sinks[Variety.CHECK] if isinstance(s, CheckSink)],
        check_plans=plans[Variety.CHECK],
        quota_sinks=[s for s in sinks[Variety.QUOTA] if isinstance(s, QuotaSink)],
        quota_plans=plans[Variety.QUOTA],
        check_cache=CheckCache(check_references(config), check_cache_size, metrics) if check_cache_size else None,
        quota_aliases={output.instance: frozenset(quota_names(output.instance)) for plan in plans[Variety.QUOTA] for output in plan.outputs},
    )


def check_references(config: CompiledConfig) -> frozenset[Reference]:
    """Everything a check verdict can depend on: what the matches of rules with check instances
    and those instances' expressions read."""
    found: set[Reference] = set()
    for rule in config.rules:
        checks = [i for a in rule.actions for i in a.instances if i.template.variety is Variety.CHECK]
        if not checks:
            continue
        if rule.match is not None:
            found |= rule.match.references
        for instance in checks:
            found.update(*(e.references for e in _expressions(instance.fields)))
    return frozenset(found)


def _expressions(fields: Mapping[str, object]) -> list[Expression]:
    out: list[Expression] = []
    for value in fields.values():
        if isinstance(value, Expression):
            out.append(value)
        elif isinstance(value, Mapping):
            out += _expressions(value)
    return out


def _sink(slot: HandlerSlot, template: str, variety: Variety, metrics: SelfMetrics) -> Sink:
    series = metrics.dispatch_series(slot.name, slot.adapter_name, template)
    if variety is Variety.REPORT:
        return ReportSink(slot, template, report_call(slot.name, slot.handler, template), series)
    if variety is Variety.CHECK:
        return CheckSink(slot, template, check_call(slot.name, slot.handler, template), series)
    return QuotaSink(slot, template, quota_call(slot.name, slot.handler, template), series)
