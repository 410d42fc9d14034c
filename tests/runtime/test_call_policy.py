"""Per-handler call policy: ``spec.connection.timeout`` cancels a slow check or quota call, and
``spec.failOpen`` decides whether a timeout or failure allows; the default denies."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from mixer.config import ConfigError, compile_config
from mixer.registry import AdapterRegistry
from mixer.sdk import DEADLINE_EXCEEDED, INTERNAL, OK, CheckResult, Handler, Instance, QuotaArgs, QuotaResult
from tests.runtime.test_runtime import HEADER, _FakeAdapter, runtime_for


class Slow(Handler):
    def __init__(self) -> None:
        self.delay = 5.0
        self.cancelled = 0

    async def check_checknothing(self, instance: Instance) -> CheckResult:
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return CheckResult()

    async def allocate_quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        await asyncio.sleep(self.delay)
        return QuotaResult(args.amount)


class Broken(Handler):
    async def check_checknothing(self, instance: Instance) -> CheckResult:
        raise ConnectionError("backend unreachable")

    async def allocate_quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        raise ConnectionError("backend unreachable")


def config(spec_extra: str) -> str:
    return HEADER + f"""kind: handler
metadata: {{name: backend}}
spec:
  compiledAdapter: fake
{spec_extra}
---
""" + HEADER + """kind: instance
metadata: {name: nothing}
spec: {compiledTemplate: checknothing}
---
""" + HEADER + """kind: instance
metadata: {name: requestcount}
spec: {compiledTemplate: quota, params: {dimensions: {}}}
---
""" + HEADER + """kind: rule
metadata: {name: all}
spec:
  actions: [{handler: backend, instances: [nothing, requestcount]}]
"""


def registry(handler: Handler) -> AdapterRegistry:
    return AdapterRegistry({"fake": _FakeAdapter(handler, frozenset({"checknothing", "quota"}))})


@pytest.mark.parametrize("fail_open", [False, True])
async def test_a_slow_check_is_cancelled_at_its_timeout_and_answers_by_policy(fail_open: bool) -> None:
    slow = Slow()
    extra = f"  connection: {{timeout: 50ms}}\n  failOpen: {'true' if fail_open else 'false'}"
    runtime = await runtime_for(("c.yaml", config(extra)), registry=registry(slow))
    started = asyncio.get_running_loop().time()
    response = await runtime.check({}, {"requestcount": QuotaArgs(amount=2)})
    assert asyncio.get_running_loop().time() - started < 2.0  # not the handler's 5 s
    assert slow.cancelled == 1
    quota = response.quotas["requestcount"]
    if fail_open:
        assert response.verdict().ok
        assert "timed out after 0.05s" in response.result.message
        assert quota.granted_amount == 2
    else:
        assert response.result.status_code == DEADLINE_EXCEEDED
        assert response.result.message == "handler backend.handler.istio-system timed out after 0.05s"
        assert quota.granted_amount == 0 and quota.status_code == DEADLINE_EXCEEDED
    # Never reused: the next check asks the handler again.
    assert response.result.valid_duration == dt.timedelta(0) and response.result.valid_use_count == 0
    await runtime.close()


@pytest.mark.parametrize("fail_open", [False, True])
async def test_a_failing_handler_allows_only_when_its_document_says_failopen(fail_open: bool) -> None:
    extra = "  failOpen: true" if fail_open else ""
    runtime = await runtime_for(("c.yaml", config(extra)), registry=registry(Broken()))
    response = await runtime.check({}, {"requestcount": QuotaArgs(amount=1)})
    assert response.result.status_code == (OK if fail_open else INTERNAL)
    assert "backend unreachable" in response.result.message
    assert response.quotas["requestcount"].granted_amount == (1 if fail_open else 0)
    assert response.verdict().ok is fail_open
    await runtime.close()


async def test_a_fast_handler_answers_within_its_timeout() -> None:
    slow = Slow()
    slow.delay = 0.0
    runtime = await runtime_for(("c.yaml", config("  connection: {timeout: 2s}")), registry=registry(slow))
    response = await runtime.check({}, {"requestcount": QuotaArgs(amount=3)})
    assert response.verdict().ok and response.quotas["requestcount"].granted_amount == 3
    await runtime.close()


@pytest.mark.parametrize(("extra", "message"), [
    ("  connection: {timeout: -1s}", "spec.connection.timeout: timeout must be positive"),
    ("  connection: {timeout: soon}", "spec.connection.timeout: timeout"),
    ("  connection: {address: 'x:1'}", "spec.connection.address: unknown field (known: timeout)"),
    ("  connection: 5s", "spec.connection: connection must be a mapping"),
    ("  failOpen: sometimes", "spec.failOpen: failOpen must be true or false, got 'sometimes'"),
])
def test_bad_call_policies_are_reported_with_their_path(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        compile_config([("c.yaml", config(extra))], registry(Slow()))
    assert message in str(caught.value)


async def test_changing_the_policy_rebuilds_the_slot_with_the_new_policy() -> None:
    runtime = await runtime_for(("c.yaml", config("")), registry=registry(Broken()))
    await runtime.apply(compile_config([("c.yaml", config("  failOpen: true"))], registry(Broken())))
    assert runtime.snapshot.slots["backend.handler.istio-system"].calls.fail_open
    assert (await runtime.check({})).result.ok
    await runtime.close()


async def test_a_backend_that_fails_every_call_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    runtime = await runtime_for(("c.yaml", config("")), registry=registry(Broken()))
    with caplog.at_level("WARNING", logger="mixer.runtime"):
        for _ in range(50):
            await runtime.check({}, {"requestcount": QuotaArgs(1)})
    failures = [r for r in caplog.records if "handler backend.handler.istio-system failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
    slot = runtime.snapshot.slots["backend.handler.istio-system"]
    assert runtime.metrics.registry.get_sample_value(
        "mixer_dispatch_errors_total", {"handler": slot.name, "adapter": "fake"}) == 100  # every one counted
    await runtime.close()
