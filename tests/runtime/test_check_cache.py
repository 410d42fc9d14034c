"""The check cache: verdicts reused for bags that agree on what the check rules read, within the
verdict's valid duration and use count; quotas never cached; a config swap empties it."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

import pytest

from mixer.config import compile_config
from mixer.registry import AdapterRegistry
from mixer.runtime import Runtime
from mixer.sdk import PERMISSION_DENIED, CheckResult, Handler, Instance, QuotaArgs, QuotaResult
from tests.runtime.test_runtime import HEADER, _FakeAdapter


class Counting(Handler):
    def __init__(self, duration: dt.timedelta = dt.timedelta(minutes=1), uses: int = 10000) -> None:
        self.checks: list[Instance] = []
        self.allocations = 0
        self.duration, self.uses = duration, uses
        self.fail = False

    async def check_listentry(self, instance: Instance) -> CheckResult:
        self.checks.append(instance)
        if self.fail:
            raise ConnectionError("down")
        ok = instance.fields["value"] != "mallory"
        return CheckResult(0 if ok else PERMISSION_DENIED, "" if ok else "mallory is blocked",
                           valid_duration=self.duration, valid_use_count=self.uses)

    async def allocate_quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        self.allocations += 1
        return QuotaResult(args.amount)


CONFIG = HEADER + """kind: handler
metadata: {name: who}
spec: {compiledAdapter: fake}
---
""" + HEADER + """kind: instance
metadata: {name: user}
spec:
  compiledTemplate: listentry
  params:
    value: request.headers["x-user"] | source.workload.name
---
""" + HEADER + """kind: instance
metadata: {name: requestcount}
spec: {compiledTemplate: quota, params: {dimensions: {}}}
---
""" + HEADER + """kind: rule
metadata: {name: users}
spec:
  match: destination.workload.name == "b"
  actions: [{handler: who, instances: [user, requestcount]}]
"""


def registry(handler: Handler) -> AdapterRegistry:
    return AdapterRegistry({"fake": _FakeAdapter(handler, frozenset({"listentry", "quota"}))})


async def runtime_with(handler: Handler, size: int = 100, config: str = CONFIG) -> Runtime:
    runtime = Runtime(registry=registry(handler), check_cache_size=size)
    await runtime.apply(compile_config([("c.yaml", config)], runtime.registry))
    return runtime


def bag(user: str = "ann", request_id: str = "1", **more: Any) -> dict[str, Any]:
    return {"destination.workload.name": "b", "source.workload.name": "a-v1",
            "request.headers": {"x-user": user, "x-request-id": request_id}, **more}


def counted(runtime: Runtime, result: str) -> float:
    return runtime.metrics.registry.get_sample_value("mixer_check_cache_total", {"result": result}) or 0.0


async def test_the_cache_keys_on_what_the_check_rules_read() -> None:
    handler = Counting()
    runtime = await runtime_with(handler)
    key = runtime.snapshot.check_cache.references  # type: ignore[union-attr]
    assert set(key) == {"destination.workload.name", ("request.headers", "x-user"), "source.workload.name"}
    first = await runtime.check(bag(request_id="1"))
    # Another request id, path and source IP: nothing the decision read differs.
    again = await runtime.check(bag(request_id="2", **{"request.path": "/x", "source.ip": "10.0.0.9"}))
    assert len(handler.checks) == 1
    assert again.result.ok and first.result.ok
    assert (counted(runtime, "miss"), counted(runtime, "hit")) == (1, 1)
    denied = await runtime.check(bag(user="mallory"))  # a referenced header differs: asked again
    assert denied.result.message == "mallory is blocked" and len(handler.checks) == 2
    assert (await runtime.check(bag(user="mallory", request_id="3"))).result.status_code == PERMISSION_DENIED
    assert len(handler.checks) == 2  # denials are cached too
    # An absent attribute is part of the key: without the header, source.workload.name is used.
    no_header = {k: v for k, v in bag().items() if k != "request.headers"}
    await runtime.check(no_header)
    assert len(handler.checks) == 3 and handler.checks[-1].fields["value"] == "a-v1"
    await runtime.close()


async def test_use_count_and_duration_are_honoured() -> None:
    handler = Counting(uses=3)
    runtime = await runtime_with(handler)
    answers = [await runtime.check(bag()) for _ in range(7)]
    assert len(handler.checks) == 3  # uses 1-3 from the first answer, 4-6 from the second, 7th asks
    assert [a.result.valid_use_count for a in answers[:3]] == [3, 2, 1]
    await runtime.close()

    handler = Counting(duration=dt.timedelta(milliseconds=100))
    runtime = await runtime_with(handler)
    await runtime.check(bag())
    hit = await runtime.check(bag())
    assert len(handler.checks) == 1 and hit.result.valid_duration <= dt.timedelta(milliseconds=100)
    await asyncio.sleep(0.15)
    await runtime.check(bag())
    assert len(handler.checks) == 2  # expired: asked again
    await runtime.close()


class Refusing(Counting):
    """Denies with every field of a verdict set, so a hit must carry each of them."""

    async def check_listentry(self, instance: Instance) -> CheckResult:
        self.checks.append(instance)
        return CheckResult(PERMISSION_DENIED, "go away", dt.timedelta(minutes=1), 5, 403,
                           {"x-why": "listed"}, "denied by list")


async def test_a_hit_is_the_verdict_with_what_is_left_of_its_duration_and_uses() -> None:
    handler = Refusing()
    runtime = await runtime_with(handler)
    first = (await runtime.check(bag())).result
    hit = (await runtime.check(bag(request_id="2"))).result
    assert len(handler.checks) == 1 and type(hit) is CheckResult
    assert dt.timedelta(seconds=59) < hit.valid_duration < first.valid_duration
    assert hit == dataclasses.replace(first, valid_duration=hit.valid_duration, valid_use_count=4)
    checks = runtime.metrics.registry.get_sample_value(
        "mixer_checks_total", {"front_door": "native", "result": "denied"})
    assert checks == 2  # a hit is counted as a check like any other
    await runtime.close()


async def test_quotas_are_allocated_on_every_check_even_on_a_hit() -> None:
    handler = Counting()
    runtime = await runtime_with(handler)
    for _ in range(3):
        response = await runtime.check(bag(), {"requestcount": QuotaArgs(1)})
        assert response.quotas["requestcount"].granted_amount == 1
    assert (len(handler.checks), handler.allocations) == (1, 3)
    await runtime.close()


async def test_a_failed_check_is_never_cached() -> None:
    handler = Counting()
    handler.fail = True
    runtime = await runtime_with(handler)
    assert not (await runtime.check(bag())).result.ok
    handler.fail = False
    assert (await runtime.check(bag())).result.ok
    assert len(handler.checks) == 2
    await runtime.close()


async def test_a_config_swap_empties_the_cache() -> None:
    handler = Counting()
    runtime = await runtime_with(handler)
    await runtime.check(bag(user="mallory"))
    await runtime.apply(compile_config([("c.yaml", CONFIG.replace('"b"', '"c"'))], runtime.registry))
    assert len(runtime.snapshot.check_cache or ()) == 0
    # The new rules do not apply to b: the old denial must not be served from the cache.
    assert (await runtime.check(bag(user="mallory"))).result.ok
    await runtime.close()


async def test_the_cache_is_bounded_and_counts_evictions() -> None:
    handler = Counting()
    runtime = await runtime_with(handler, size=2)
    for user in ("u1", "u2", "u3"):
        await runtime.check(bag(user=user))
    assert len(runtime.snapshot.check_cache or ()) == 2
    assert runtime.metrics.registry.get_sample_value("mixer_check_cache_evictions_total") == 1
    await runtime.check(bag(user="u3"))  # recent: kept
    await runtime.check(bag(user="u1"))  # least recently used: evicted, asked again
    assert [c.fields["value"] for c in handler.checks] == ["u1", "u2", "u3", "u1"]
    await runtime.close()


async def test_size_zero_turns_the_cache_off() -> None:
    handler = Counting()
    runtime = await runtime_with(handler, size=0)
    await runtime.check(bag())
    await runtime.check(bag())
    assert runtime.snapshot.check_cache is None and len(handler.checks) == 2
    await runtime.close()


def test_a_whole_map_in_the_key_is_compared_by_content() -> None:
    from mixer.runtime._cache import CheckCache
    from mixer.selfmetrics import SelfMetrics

    cache = CheckCache(["request.headers", "source.ip"], 10, SelfMetrics())
    first = cache.key({"request.headers": {"a": "1", "b": "2"}})
    assert first is not None and first == cache.key({"request.headers": {"b": "2", "a": "1"}})
    assert first != cache.key({"request.headers": {"a": "1"}})
    cache.put(first, CheckResult(valid_use_count=5))
    key, hit, seconds, uses = cache.lookup({"request.headers": {"b": "2", "a": "1"}})
    assert key == first and hit is not None and uses == 4 and seconds > 0
    assert cache.lookup({"request.headers": {"a": "1"}})[1] is None


@pytest.mark.parametrize("names", [(), ("source.ip",), ("source.ip", "request.method", "request.path")])
def test_a_bag_lacking_a_keyed_attribute_hits_only_what_a_bag_lacking_it_left(names: tuple[str, ...]) -> None:
    # lookup reads a bag that has every keyed attribute with one call and falls back to key() when one
    # is absent: both must give the same key for the same bag, and absence must stay part of the key.
    from mixer.runtime._cache import CheckCache
    from mixer.selfmetrics import SelfMetrics

    cache = CheckCache(names, 10, SelfMetrics())
    full = {name: f"v-{name}" for name in names} | {"request.id": "unkeyed"}
    key, hit, _, _ = cache.lookup(full)
    assert hit is None and key == cache.key(full)
    cache.put(key, CheckResult(valid_use_count=5))
    assert cache.lookup({**full, "request.id": "other"})[1] is not None
    for lacking in names:
        partial = {k: v for k, v in full.items() if k != lacking}
        key, hit, _, _ = cache.lookup(partial)
        assert hit is None and key == cache.key(partial) and key != cache.key(full)
        cache.put(key, CheckResult(valid_use_count=5))
        assert cache.lookup(dict(partial))[1] is not None


async def test_what_each_front_door_answers_for_a_hit_is_what_it_answered_for_the_miss() -> None:
    from mixer.attributes import parse_duration
    from mixer.frontdoors.authz import encode_result
    from mixer.frontdoors.native import check_response_json

    handler = Refusing()
    runtime = await runtime_with(handler)
    miss = await runtime.check(bag())
    hits = [await runtime.check(bag(request_id=str(n))) for n in range(3)]
    assert len(handler.checks) == 1
    # Envoy's doors read the verdict's status, message and HTTP refinements: the same bytes.
    assert {encode_result(h.verdict()) for h in hits} == {encode_result(miss.verdict())}
    # The native API also reports the validity: the same answer but for what is left of it.
    answers = [check_response_json(r) for r in (miss, *hits)]
    assert [a.pop("valid_use_count") for a in answers] == [5, 4, 3, 2]
    durations = [parse_duration(a.pop("valid_duration")) for a in answers]
    assert durations[0] == dt.timedelta(minutes=1) and dt.timedelta(seconds=59) < durations[-1] < durations[0]
    assert durations == sorted(durations, reverse=True)
    assert all(a == answers[0] for a in answers)
    assert hits[0].result == hits[0].result  # built on each read, from the same seconds and uses left
    assert hits[0] != hits[1]  # the response compares what it reports, uses left included
    await runtime.close()


async def test_a_hit_with_quotas_reports_what_is_left_too() -> None:
    handler = Counting(uses=4)
    runtime = await runtime_with(handler)
    answers = [await runtime.check(bag(), {"requestcount": QuotaArgs(1)}) for _ in range(3)]
    assert [a.result.valid_use_count for a in answers] == [4, 3, 2] and len(handler.checks) == 1
    assert all(a.verdict().ok and a.quotas["requestcount"].granted_amount == 1 for a in answers)
    await runtime.close()


def test_a_hit_counts_down_the_seconds_and_uses_it_has_left() -> None:
    from mixer.runtime._cache import CheckCache, remaining_verdict
    from mixer.selfmetrics import SelfMetrics

    now = [100.0]
    cache = CheckCache(["source.ip"], 10, SelfMetrics(), clock=lambda: now[0])
    verdict = CheckResult(valid_duration=dt.timedelta(seconds=10), valid_use_count=3, headers={"a": "b"})
    key = cache.key({"source.ip": "10.0.0.1"})
    assert key is not None
    cache.put(key, verdict)
    now[0] = 102.5
    _, cached, seconds, uses = cache.lookup({"source.ip": "10.0.0.1"})
    assert cached is verdict and (seconds, uses) == (7.5, 2)
    assert remaining_verdict(verdict, seconds, uses) == dataclasses.replace(
        verdict, valid_duration=dt.timedelta(seconds=7.5), valid_use_count=2)
    _, cached, seconds, uses = cache.lookup({"source.ip": "10.0.0.1"})
    assert cached is verdict and uses == 1 and len(cache) == 0  # its last use: gone
    assert cache.lookup({"source.ip": "10.0.0.1"}) == (key, None, 0.0, 0)


async def test_checks_are_counted_per_front_door_and_verdict() -> None:
    runtime = await runtime_with(Counting())
    for user, door in [("ann", "native"), ("ann", "native"), ("mallory", "native"), ("ann", "authz"),
                       ("mallory", "authz"), ("mallory", "authz")]:
        await runtime.check(bag(user=user), front_door=door)
    got = {(s.labels["front_door"], s.labels["result"]): s.value
           for family in runtime.metrics.registry.collect() if family.name == "mixer_checks"
           for s in family.samples if s.name == "mixer_checks_total"}
    assert got == {("native", "ok"): 2, ("native", "denied"): 1, ("authz", "ok"): 1, ("authz", "denied"): 2}
    await runtime.close()
