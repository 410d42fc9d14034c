"""Which check rules can fire for a listener, from its fixed attributes alone (``listener_policy``,
``Expression.decide``): exact where the fixed attributes decide, "depends" (check) otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from mixer.attributes import default_manifest
from mixer.config import compile_config
from mixer.envoy_attributes import TCP_CHECK_VARYING, inbound_check_facts, inbound_tcp_check_facts
from mixer.expr import EvaluationError, UnknownValue, compile_expression
from mixer.registry import AdapterRegistry
from mixer.envoy_attributes import HEADER_ONLY_ATTRIBUTES
from mixer.runtime import Denial, ListenerPolicy, StaticFacts, listener_policy

MANIFEST = default_manifest()
C_FACTS = inbound_check_facts(
    {"app": "c", "version": "v1", "WORKLOAD_NAME": "c-v1", "NAMESPACE": "default"},
    {"destination.service.name": "c", "destination.service.namespace": "default",
     "destination.service.host": "c.default.svc.cluster.local", "mixer.quotas": "requestcount"},
    MANIFEST,
)


def test_the_fixed_facts_are_the_checking_sidecars_identity_only() -> None:
    assert C_FACTS == {
        "context.reporter.kind": "inbound",
        "destination.workload.name": "c-v1", "destination.name": "c-v1",
        "destination.workload.namespace": "default", "destination.namespace": "default",
        "destination.labels": {"app": "c", "version": "v1"},
        "destination.service.name": "c", "destination.service.namespace": "default",
        "destination.service.host": "c.default.svc.cluster.local",
    }


@pytest.mark.parametrize(("text", "expected"), [
    ('destination.workload.name == "c-v1"', True),
    ('destination.workload.name == "b-v1"', False),
    ('(destination.workload.name | "") == "c-v1"', True),
    ('destination.labels["app"] == "c" && destination.namespace == "default"', True),
    ('destination.labels["version"] | "none" == "v2"', False),
    ('source.workload.name == "a-v1"', None),
    ('(source.workload.name | "") == "a-v1"', None),  # a default does not make an unknown absent
    # a conjunction is false as soon as one fixed operand is, in either order
    ('(source.workload.name | "") == "a-v1" && (destination.workload.name | "") == "b-v1"', False),
    ('(destination.workload.name | "") == "b-v1" && (source.workload.name | "") == "a-v1"', False),
    ('(source.workload.name | "") == "a-v1" && destination.workload.name == "c-v1"', None),
    ('destination.workload.name == "c-v1" || request.path == "/x"', True),
    ('destination.workload.name == "b-v1" || request.path == "/x"', None),
    ('!(destination.workload.name == "b-v1" && source.workload.name == "a-v1")', True),  # Python's own shortcut
    # only the top-level chain is decided operand by operand: under ! an unknown stays unknown
    ('!(source.workload.name == "a-v1" && destination.workload.name == "b-v1")', None),
    ('match(request.path | "/", "/admin*") && destination.service.name == "catalog"', False),
    ('request.headers["x-user"] == "ann"', None),
    ('destination.principal == "x"', None),  # from mTLS at run time: never a fixed fact
    ('conditional(destination.workload.name == "c-v1", true, false)', True),
    ('size(destination.labels) == 2', True),
])
def test_decide(text: str, expected: bool | None) -> None:
    assert compile_expression(text, MANIFEST).decide(StaticFacts(C_FACTS)) is expected


def test_a_failure_on_fixed_values_means_the_rule_never_fires() -> None:
    expression = compile_expression('ip(destination.workload.name) == ip("10.0.0.1")', MANIFEST)
    with pytest.raises(EvaluationError):
        expression.evaluate(C_FACTS)  # "c-v1" is no IP address
    assert expression.decide(StaticFacts(C_FACTS)) is False


def test_static_facts_raise_unknown_for_every_kind_of_access() -> None:
    facts = StaticFacts({"a": 1})
    for access in (lambda: facts["b"], lambda: facts.get("b", 0), lambda: "b" in facts):
        with pytest.raises(UnknownValue):
            access()
    assert facts["a"] == 1 and facts.get("a") == 1 and "a" in facts and dict(facts) == {"a": 1}


def test_decide_does_not_change_evaluation() -> None:
    expression = compile_expression('(source.workload.name | "") == "a-v1" && destination.workload.name == "c-v1"',
                                    MANIFEST)
    assert expression.evaluate({"source.workload.name": "a-v1", "destination.workload.name": "c-v1"}) is True
    assert expression.evaluate({"destination.workload.name": "c-v1"}) is False


CAPTURE = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: h, namespace: istio-system}
spec: {compiledAdapter: noop}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: m, namespace: istio-system}
spec: {compiledTemplate: metric, params: {value: "1", dimensions: {d: destination.workload.name | ""}}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: telemetry, namespace: istio-system}
spec: {actions: [{handler: h, instances: [m]}]}
"""


def _denier(name: str, match: str, code: int = 7, instance: str = "checknothing") -> str:
    params = "" if instance == "checknothing" else ", params: {value: request.path | \"\"}"
    template = instance if instance == "checknothing" else "listentry"
    return f"""
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {{name: {name}, namespace: istio-system}}
spec: {{compiledAdapter: denier, params: {{status: {{code: {code}}}}}}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {{name: {name}-i, namespace: istio-system}}
spec: {{compiledTemplate: {template}{params}}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: {name}, namespace: istio-system}}
spec:
  match: '{match}'
  actions: [{{handler: {name}, instances: [{name}-i]}}]
"""


QUOTA = """
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: q, namespace: istio-system}
spec: {compiledAdapter: memquota, params: {quotas: [{name: rq.instance.istio-system, maxAmount: 10}]}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: rq, namespace: istio-system}
spec: {compiledTemplate: quota, params: {dimensions: {d: destination.workload.name | ""}}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: quota, namespace: istio-system}
spec:
  match: 'MATCH'
  actions: [{handler: q, instances: [rq]}]
"""


def _policy(text: str, facts: dict[str, Any] = C_FACTS, trust_headers: bool = False) -> ListenerPolicy:
    header_only = HEADER_ONLY_ATTRIBUTES if trust_headers else {}
    return listener_policy(compile_config([("c.yaml", text)], AdapterRegistry()), facts, header_only)


def test_telemetry_only_needs_no_check() -> None:
    assert _policy(CAPTURE) == ListenerPolicy(check=False)


def test_identity_denial_is_enforced_without_a_check() -> None:
    text = CAPTURE + _denier("closed", 'destination.workload.name == "c-v1"')
    assert _policy(text) == ListenerPolicy(check=False, deny=(Denial("closed.rule.istio-system"),))


def test_denials_that_are_not_403_or_not_fixed_stay_on_ext_authz() -> None:
    assert _policy(CAPTURE + _denier("u", 'destination.workload.name == "c-v1"', code=16)) == ListenerPolicy(True)
    assert _policy(CAPTURE + _denier("ok", 'destination.workload.name == "c-v1"', code=0)) == ListenerPolicy(True)
    listentry = _denier("l", 'destination.workload.name == "c-v1"', instance="listentry")
    assert _policy(CAPTURE + listentry) == ListenerPolicy(True)  # its instance needs request.path


def test_rules_for_other_workloads_or_depending_on_the_request() -> None:
    other = _denier("other", '(source.workload.name | "") == "a-v1" && destination.workload.name == "b-v1"')
    assert _policy(CAPTURE + other) == ListenerPolicy(check=False)
    caller = _denier("caller", '(source.workload.name | "") == "a-v1" && destination.workload.name == "c-v1"')
    assert _policy(CAPTURE + caller) == ListenerPolicy(check=True)


def test_a_rule_on_the_caller_becomes_a_header_test_when_peer_headers_are_trusted() -> None:
    caller = _denier("caller", '(source.workload.name | "") == "a-v1" && destination.workload.name == "c-v1"')
    assert _policy(CAPTURE + caller, trust_headers=True) == ListenerPolicy(
        check=False, deny=(Denial("caller.rule.istio-system", (("x-mixer-workload", "a-v1"),)),))
    strict = _denier("strict", 'destination.workload.name == "c-v1" && "a-v1" == source.name')
    assert _policy(CAPTURE + strict, trust_headers=True).deny == (
        Denial("strict.rule.istio-system", (("x-mixer-workload", "a-v1"),)),)
    # other rules that can fire still need the Check
    quota = QUOTA.replace("MATCH", 'request.path == "/x"')
    assert _policy(CAPTURE + caller + quota, trust_headers=True).check is True


@pytest.mark.parametrize("match", [
    '(source.workload.name | "") == ""',  # holds without the header too
    '(source.workload.name | "a-v1") == "a-v1"',  # the default itself
    '(source.workload.name | "") != "a-v1"',  # not an equality
    'source.workload.namespace == "default"',  # an mTLS certificate can set it too
    '(source.workload.name | "") == "a-v1" || destination.workload.name == "c-v1"',  # not a conjunction
    '(source.workload.name | "") == "a-v1" && request.path == "/x"',  # a test the proxy is not given
    'toLower(source.workload.name | "") == "a-v1"',
])
def test_other_request_dependent_rules_stay_on_ext_authz(match: str) -> None:
    assert _policy(CAPTURE + _denier("r", match), trust_headers=True) == ListenerPolicy(check=True)


def test_quota_rules_need_a_check_only_where_they_can_fire() -> None:
    assert _policy(CAPTURE + QUOTA.replace("MATCH", 'destination.workload.name == "b-v1"')) == ListenerPolicy(False)
    assert _policy(CAPTURE + QUOTA.replace("MATCH", 'destination.workload.name == "c-v1"')) == ListenerPolicy(True)
    assert _policy(CAPTURE + QUOTA.replace("MATCH", 'request.path == "/x"')) == ListenerPolicy(True)


def test_unknown_facts_are_always_checked() -> None:
    assert _policy(CAPTURE + _denier("closed", 'destination.workload.name == "c-v1"'), {}) == ListenerPolicy(True)


# A TCP listener's Checks (Envoy's network ext_authz) carry no request attributes: only what may
# vary per connection (TCP_CHECK_VARYING) is unknown, anything else is surely absent.
DB_FACTS = inbound_tcp_check_facts(
    {"app": "db", "version": "v1", "WORKLOAD_NAME": "db-v1", "NAMESPACE": "default", "SERVICE_NAME": "db"}, MANIFEST)


def _tcp_policy(text: str) -> ListenerPolicy:
    return listener_policy(compile_config([("c.yaml", text)], AdapterRegistry()), DB_FACTS, {}, TCP_CHECK_VARYING)


@pytest.mark.parametrize(("match", "expected"), [
    ('(request.path | "").startsWith("/admin")', ListenerPolicy(check=False)),  # absent on TCP: never fires
    ('request.method == "GET"', ListenerPolicy(check=False)),  # absent without a default: fails, never fires
    ('context.protocol == "http"', ListenerPolicy(check=False)),
    ('destination.workload.name == "c-v1"', ListenerPolicy(check=False)),
    ('source.ip == ip("127.0.0.2")', ListenerPolicy(check=True)),  # per connection: ask
    ('(source.principal | "") == "x"', ListenerPolicy(check=True)),
    ('(source.workload.name | "") == "a-v1"', ListenerPolicy(check=False)),  # no header on TCP: the default
    ('destination.service.host == "db.default.svc.cluster.local"',
     ListenerPolicy(check=False, deny=(Denial("r.rule.istio-system"),))),
])
def test_tcp_listener_policy(match: str, expected: ListenerPolicy) -> None:
    assert _tcp_policy(CAPTURE + _denier("r", match)) == expected


def test_static_facts_with_varying_attributes_make_the_rest_absent() -> None:
    facts = StaticFacts({"a": 1}, varying={"b"})
    for access in (lambda: facts["b"], lambda: facts.get("b", 0), lambda: "b" in facts):
        with pytest.raises(UnknownValue):
            access()
    assert "c" not in facts and facts.get("c", 5) == 5
    with pytest.raises(KeyError):
        facts["c"]
