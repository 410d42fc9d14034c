"""The rbac adapter through the real loader and runtime: ServiceRoles and ServiceRoleBindings from
config files decide authorization checks, and a denial names what did not allow the request."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.rbac import RbacAdapter, RbacHandler
from mixer.config import compile_config, load_config, read_sources
from mixer.registry import AdapterRegistry
from mixer.runtime import Runtime
from mixer.selfmetrics import SelfMetrics
from mixer.sdk import OK, PERMISSION_DENIED, Env, Instance, ParamsError

TESTDATA = Path(__file__).parent / "testdata"
POLICY = TESTDATA / "policy.yaml"
HANDLER = "rbac.handler.istio-system"


def expectations(path: Path) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in path.read_text().splitlines() if line.startswith("# expect:")]


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("bad_*.yaml")), ids=lambda p: p.stem)
def test_bad_params_name_every_problem(path: Path) -> None:
    expected = expectations(path)
    with pytest.raises(ParamsError) as err:
        RbacAdapter().parse_params(yaml.safe_load(path.read_text()))
    reported = [f"{where}: {message}" for where, message in err.value.problems]
    for want in expected:
        assert any(line.startswith(want) for line in reported), f"{want!r} not in {reported}"
    assert len(reported) == len(expected), reported


@pytest.fixture
async def runtime() -> Any:
    rt = await Runtime.load([POLICY])
    yield rt
    await rt.close()


def bag(service: str, method: str = "GET", path: str = "/", **extra: Any) -> dict[str, Any]:
    return {"destination.service.host": f"{service}.default.svc.cluster.local",
            "destination.service.namespace": "default", "request.method": method, "request.path": path, **extra}


async def verdict(runtime: Runtime, attributes: dict[str, Any]) -> tuple[int, str]:
    result = (await runtime.check(attributes)).result
    return result.status_code, result.message


def test_loader_hands_the_documents_to_the_handler() -> None:
    config = load_config([POLICY])
    policy = config.rbac
    assert [r.name for r in policy.roles] == ["details-admin", "products-viewer", "ratings-tester",
                                              "reviews-editor", "unbound"]
    assert [b.role for b in policy.bindings] == ["details-admin", "products-viewer", "ratings-tester",
                                                 "reviews-editor"]
    params = config.handlers[HANDLER].params
    assert params.policy is policy and params.cache_duration == dt.timedelta(seconds=30)


async def test_methods_services_and_wildcard_users(runtime: Runtime) -> None:
    assert (await verdict(runtime, bag("products")))[0] == OK
    assert (await verdict(runtime, bag("products", "HEAD", **{"source.principal": "anyone"})))[0] == OK
    code, message = await verdict(runtime, bag("products", "DELETE"))
    assert code == PERMISSION_DENIED
    assert message.startswith("RBAC: permission denied: no ServiceRole in namespace 'default' allows DELETE / "
                              "on service products.default.svc.cluster.local (roles: details-admin, ")


async def test_paths_exact_prefix_and_suffix_and_groups(runtime: Runtime) -> None:
    editor = {"source.principal": "cluster.local/ns/default/sa/editor"}
    for path in ("/reviews/1", "/reviews", "/books/1/comments", "/health"):
        assert (await verdict(runtime, bag("reviews", "POST", path, **editor)))[0] == OK, path
    for path in ("/health/x", "/books/1", "/review"):
        assert (await verdict(runtime, bag("reviews", "POST", path, **editor)))[0] == PERMISSION_DENIED, path
    by_group = bag("reviews", "PUT", "/reviews/2", **{"request.auth.claims": {"groups": "editors"}})
    assert (await verdict(runtime, by_group))[0] == OK
    code, message = await verdict(runtime, bag("reviews", "POST", "/reviews/2",
                                               **{"source.principal": "cluster.local/ns/default/sa/guest"}))
    assert code == PERMISSION_DENIED
    assert message == ("RBAC: permission denied: ServiceRole 'reviews-editor' allows POST /reviews/2 on service "
                       "reviews.default.svc.cluster.local but its ServiceRoleBinding 'bind-reviews-editor' does "
                       "not name user 'cluster.local/ns/default/sa/guest'")


async def test_constraints_and_subject_properties(runtime: Runtime) -> None:
    tester = {"source.namespace": "testing"}
    for version, code in (("v1", OK), ("v2-canary", OK), ("v3", PERMISSION_DENIED)):
        attributes = bag("ratings", "PATCH", "/r", **tester, **{"destination.labels": {"version": version}})
        assert (await verdict(runtime, attributes))[0] == code, version
    no_label = bag("ratings", "PATCH", "/r", **tester)
    assert (await verdict(runtime, no_label))[0] == PERMISSION_DENIED
    # alice matches only with the issuer claim too: every field a subject sets must match.
    alice = {"source.principal": "alice", "destination.labels": {"version": "v1"}}
    assert (await verdict(runtime, bag("ratings", **alice)))[0] == PERMISSION_DENIED
    claims = {"request.auth.claims": {"iss": "https://accounts.example"}}
    assert (await verdict(runtime, bag("ratings", **alice, **claims)))[0] == OK


async def test_denials_name_roles_and_bindings(runtime: Runtime) -> None:
    _, message = await verdict(runtime, bag("details", "GET", "/d", **{"source.principal": "bob"}))
    assert "ServiceRole 'details-admin'" in message and "'bind-details-admin' does not name user 'bob'" in message
    _, message = await verdict(runtime, bag("orphan"))
    assert "ServiceRole 'unbound' allows GET / on service orphan.default.svc.cluster.local but no " \
           "ServiceRoleBinding refers to it" in message
    elsewhere = bag("products") | {"destination.service.namespace": "prod"}
    assert await verdict(runtime, elsewhere) == (PERMISSION_DENIED,
                                                 "RBAC: permission denied: no ServiceRole in namespace 'prod'")
    code, message = await verdict(runtime, {"destination.service.namespace": "default"})
    assert code == PERMISSION_DENIED
    assert message.endswith("has no action.service, action.method, action.path")


async def test_answer_durations_and_use_counts(runtime: Runtime) -> None:
    allowed = (await runtime.check(bag("products"))).result
    denied = (await runtime.check(bag("products", "DELETE"))).result
    for result in (allowed, denied):
        assert result.valid_duration == dt.timedelta(seconds=30)
        assert result.valid_use_count == 1_000_000_000


async def test_changing_a_role_rebuilds_the_handler_and_others_keep_theirs(tmp_path: Path) -> None:
    config_path = tmp_path / "policy.yaml"
    config_path.write_text(POLICY.read_text())
    runtime = await Runtime.load([config_path])
    try:
        first = runtime.snapshot.slots[HANDLER].handler
        assert isinstance(first, RbacHandler)
        await runtime.reload([config_path])
        assert runtime.snapshot.slots[HANDLER].handler is first  # nothing changed: kept
        assert (await verdict(runtime, bag("products", "DELETE")))[0] == PERMISSION_DENIED
        config_path.write_text(POLICY.read_text().replace("methods: [GET, HEAD]", "methods: [GET, HEAD, DELETE]"))
        await runtime.reload([config_path])
        assert runtime.snapshot.slots[HANDLER].handler is not first
        assert (await verdict(runtime, bag("products", "DELETE")))[0] == OK
    finally:
        await runtime.close()


def test_roles_are_only_handed_to_adapters_that_use_them() -> None:
    sources = read_sources([POLICY]) + [("deny.yaml", """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny, namespace: istio-system}
spec: {compiledAdapter: denier}
""")]
    config = compile_config(sources, AdapterRegistry())
    assert "$rbacPolicy" not in config.handlers["deny.handler.istio-system"].raw_params
    assert "$rbacPolicy" in config.handlers[HANDLER].raw_params


# Mixer's TestRBACStore_CheckPermission: (namespace, service, path, method, version, source namespace,
# source service, user, allowed).
MIXER_CASES = [
    ("ns1", "products", "/products", "GET", "v1", "ns2", "svc1", "alice@yahoo.com", True),
    ("ns1", "products", "/somepath", "POST", "v2", "abc", "reviews", "bob@yahoo.com", True),
    ("ns1", "products", "/somepath", "POST", "v2", "abc", "svc1", "bob@yahoo.com", False),
    ("ns1", "products", "/somepath", "POST", "v3", "ns2", "svc1", "alice@yahoo.com", False),
    ("ns1", "bookstore", "/books", "GET", "", "acme", "svc1", "svc@gserviceaccount.com", True),
    ("ns1", "bookstore", "/books", "POST", "", "acme", "svc1", "svc@gserviceaccount.com", False),
    ("ns1", "bookstore", "/shelf", "GET", "", "acme", "svc1", "svc@gserviceaccount.com", False),
    ("ns1", "fishpond", "/pond/a", "GET", "v1", "abcfish", "serv", "svc@gserviceaccount.com", True),
    ("ns1", "fish", "/pond/review", "GET", "v1", "mynamespace", "xyz", "alice@yahoo.com", True),
    ("ns1", "fish", "/pond/review", "GET", "v1", "wonrgnamespace", "xyz", "alice@yahoo.com", False),
    ("ns1", "fishpond", "/pond/review", "GET", "v1", "mynamespace", "xyz", "alice@yahoo.com", False),
    ("ns1", "fish", "/pond/review", "GET", "v1", "mynamespace", "xyz", "bob@yahoo.com", False),
    ("ns1", "abc", "/index", "GET", "", "mynamespace", "xyz", "anyuser", True),
]


@pytest.mark.parametrize("case", MIXER_CASES, ids=[f"{c[1]}{c[2]}-{c[3]}-{c[7]}-{c[8]}" for c in MIXER_CASES])
async def test_mixers_own_rbac_cases(case: tuple[Any, ...]) -> None:
    namespace, service, path, method, version, source_ns, source_svc, user, allowed = case
    config = load_config([TESTDATA / "mixer_store.yaml"])
    compiled = config.handlers[HANDLER]
    env = Env(HANDLER, logging.getLogger("test.rbac"), SelfMetrics())
    handler = compiled.adapter.build(compiled.params, env, {})
    fields = {
        "subject": {"user": user, "groups": user, "properties": {"namespace": source_ns, "service": source_svc}},
        "action": {"namespace": namespace, "service": service, "path": path, "method": method,
                   "properties": {"version": version}},
    }
    result = await handler.check_authorization(Instance("ctx.instance.istio-system", "authorization", fields))
    assert result.ok is allowed, result.message
