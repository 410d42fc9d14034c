"""The list handler: every kind of list, whitelist and blacklist answers, and providers (a file and
a real loopback HTTP server made to fail on purpose)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.list import ListAdapter, ListHandler
from mixer.processes import free_port
from mixer.sdk import INVALID_ARGUMENT, NOT_FOUND, OK, PERMISSION_DENIED, UNAVAILABLE, Env, Instance
from mixer.selfmetrics import SelfMetrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def env(clock: FakeClock) -> Env:
    return Env("ips.handler.istio-system", logging.getLogger("test.list"), SelfMetrics(), clock)


Make = Callable[..., ListHandler]


@pytest.fixture
async def make(env: Env) -> AsyncIterator[Make]:
    built: list[ListHandler] = []

    def build(**raw: Any) -> ListHandler:
        adapter = ListAdapter()
        handler = adapter.build(adapter.parse_params(raw), env, {})
        assert isinstance(handler, ListHandler)
        built.append(handler)
        return handler

    yield build
    for handler in built:
        await handler.close()


async def check(handler: ListHandler, value: Any) -> tuple[int, str]:
    result = await handler.check_listentry(Instance("entry.instance.istio-system", "listentry", {"value": value}))
    return result.status_code, result.message


def failures(env: Env) -> float:
    value = env.metrics.registry.get_sample_value(
        "mixer_handler_refresh_failures_total", {"handler": env.handler_name})
    return value or 0.0


# -- kinds of list ------------------------------------------------------------------------------


async def test_strings_whitelist_and_blacklist(make: Make) -> None:
    white = make(overrides=["v1", "v2"])
    assert await check(white, "v1") == (OK, "")
    assert await check(white, "V1") == (NOT_FOUND, "V1 is not whitelisted")
    black = make(overrides=["v3"], blacklist=True)
    assert await check(black, "v3") == (PERMISSION_DENIED, "v3 is blacklisted")
    assert await check(black, "v1") == (OK, "")


async def test_case_insensitive_strings(make: Make) -> None:
    handler = make(overrides=["Reviews-V3"], entryType="CASE_INSENSITIVE_STRINGS", blacklist=True)
    assert (await check(handler, "reviews-v3"))[0] == PERMISSION_DENIED
    assert (await check(handler, "REVIEWS-V3"))[0] == PERMISSION_DENIED
    assert (await check(handler, "reviews-v2"))[0] == OK


async def test_ip_addresses_and_cidr_ranges(make: Make) -> None:
    handler = make(overrides=["10.57.0.0/16", "192.168.1.7", "2001:db8::/32", "10.0.0.1/8"],
                   entryType="IP_ADDRESSES")
    assert (await check(handler, "10.57.3.4"))[0] == OK
    assert (await check(handler, ipaddress.ip_address("192.168.1.7")))[0] == OK
    assert (await check(handler, "192.168.1.8"))[0] == NOT_FOUND
    assert (await check(handler, "2001:db8::1"))[0] == OK
    assert (await check(handler, "::ffff:10.57.0.9"))[0] == OK  # IPv4-mapped is the IPv4 address
    assert (await check(handler, "10.200.0.1"))[0] == OK  # 10.0.0.1/8 is 10.0.0.0/8, as Go parsed it
    assert (await check(handler, bytes([10, 57, 0, 1])))[0] == OK
    assert await check(handler, "not-an-ip") == (INVALID_ARGUMENT, "not-an-ip is not a valid IP address")


async def test_regex_entries_are_unanchored_re2(make: Make) -> None:
    handler = make(overrides=["^/admin", "secret"], entryType="REGEX", blacklist=True)
    assert (await check(handler, "/admin/users"))[0] == PERMISSION_DENIED
    assert (await check(handler, "/api/secret/x"))[0] == PERMISSION_DENIED
    assert (await check(handler, "/api/admin"))[0] == OK
    # Catastrophic for a backtracking engine (2^40 paths); RE2 answers in linear time.
    redos = make(overrides=["^(a+)+$"], entryType="REGEX", blacklist=True)
    assert (await check(redos, "a" * 40 + "!"))[0] == OK


async def test_answer_carries_caching_params_and_bad_values_are_invalid(make: Make) -> None:
    handler = make(overrides=["x"], cachingInterval="7s", cachingUseCount=3)
    result = await handler.check_listentry(Instance("e", "listentry", {"value": "y"}))
    assert (result.valid_duration, result.valid_use_count) == (dt.timedelta(seconds=7), 3)
    assert (await check(handler, {"a": "b"}))[0] == INVALID_ARGUMENT
    empty = await handler.check_listentry(Instance("e", "listentry", {}))
    assert empty.status_code == INVALID_ARGUMENT and "has no value" in empty.message


# -- providers ------------------------------------------------------------------------------------


async def test_file_provider_is_read_at_start_and_on_refresh(make: Make, tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    path.write_text("# blocked users\nmallory\n\n  eve  \n")
    handler = make(providerUrl=path.as_uri(), blacklist=True, overrides=["trudy"])
    await handler.start()
    assert (await check(handler, "eve"))[0] == PERMISSION_DENIED
    assert (await check(handler, "trudy"))[0] == PERMISSION_DENIED
    assert (await check(handler, "alice"))[0] == OK
    path.write_text("alice\n")
    assert await handler.refresh()
    assert (await check(handler, "alice"))[0] == PERMISSION_DENIED
    assert (await check(handler, "eve"))[0] == OK


async def test_ip_provider_accepts_mixers_whitelist_yaml(make: Make, tmp_path: Path) -> None:
    path = tmp_path / "ips.yaml"
    path.write_text("whitelist:\n- 10.0.0.0/8\n- 127.0.0.2\n")
    handler = make(providerUrl=path.as_uri(), entryType="IP_ADDRESSES")
    await handler.start()
    assert (await check(handler, "10.1.2.3"))[0] == OK
    assert (await check(handler, "127.0.0.3"))[0] == NOT_FOUND


class ListServer:
    """A real aiohttp server on a loopback port whose answer tests change (and break) at will."""

    def __init__(self) -> None:
        self.status = 200
        self.body = ""
        self.requests = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/list"
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(status=self.status, text=self.body)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/list", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def server() -> AsyncIterator[ListServer]:
    srv = ListServer()
    await srv.start()
    yield srv
    await srv.stop()


async def test_http_refresh_failure_serves_the_last_good_list_counted_and_logged(
    make: Make, server: ListServer, env: Env, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    server.body = "10.1.0.0/16\n"
    handler = make(providerUrl=server.url, entryType="IP_ADDRESSES", blacklist=True,
                   refreshInterval="10s", ttl="60s")
    await handler.start()
    assert (await check(handler, "10.1.2.3"))[0] == PERMISSION_DENIED
    assert failures(env) == 0

    server.status, server.body = 500, "oops"
    clock.now += 10
    with caplog.at_level(logging.WARNING, logger="test.list"):
        assert not await handler.refresh()
    assert failures(env) == 1
    assert "HTTP 500" in caplog.text and "keeping the last good list" in caplog.text
    assert (await check(handler, "10.1.2.3"))[0] == PERMISSION_DENIED  # last good list still answers

    server.status, server.body = 200, "10.1.0.0/16\n10.999.0.0/16\n"  # a bad entry: refused whole
    assert not await handler.refresh()
    assert failures(env) == 2
    assert "entry 2: '10.999.0.0/16' is not an IP address" in handler.last_error
    assert (await check(handler, "10.1.2.3"))[0] == PERMISSION_DENIED

    await server.stop()  # connection refused
    assert not await handler.refresh()
    assert failures(env) == 3
    assert "ClientConnectorError" in handler.last_error

    clock.now += 61  # past ttl since the last good fetch: Mixer purged the list
    code, message = await check(handler, "10.1.2.3")
    assert code == UNAVAILABLE and "list expired" in message and "ClientConnectorError" in message
    result = await handler.check_listentry(Instance("e", "listentry", {"value": "10.1.2.3"}))
    assert result.valid_use_count == 0 and result.valid_duration == dt.timedelta(0)

    await server.start()
    server.body = "10.2.0.0/16\n"
    assert await handler.refresh()
    assert (await check(handler, "10.1.2.3"))[0] == OK
    assert (await check(handler, "10.2.0.1"))[0] == PERMISSION_DENIED


async def test_provider_down_at_start_denies_until_it_answers(make: Make, server: ListServer, env: Env) -> None:
    server.status = 503
    handler = make(providerUrl=server.url, overrides=["admin"], refreshInterval="10s")
    await handler.start()  # does not fail the config: the proxy gets a clear denial instead
    assert (await check(handler, "admin"))[0] == OK  # the overrides still answer
    code, message = await check(handler, "bob")
    assert code == UNAVAILABLE and "HTTP 503" in message
    server.status, server.body = 200, "bob\n"
    assert await handler.refresh()
    assert (await check(handler, "bob"))[0] == OK
    assert failures(env) == 1


async def test_oversized_list_is_refused(make: Make, server: ListServer, env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("adapters.list.handler.MAX_LIST_BYTES", 64)
    server.body = "x\n" * 100
    handler = make(providerUrl=server.url)
    await handler.start()
    assert "exceeds 64" in handler.last_error and failures(env) == 1


async def test_refresh_loop_runs_on_its_interval(make: Make, server: ListServer) -> None:
    server.body = "one\n"
    handler = make(providerUrl=server.url, refreshInterval="1s", ttl="5s")
    await handler.start()
    assert (await check(handler, "two"))[0] == NOT_FOUND
    server.body = "two\n"
    for _ in range(50):  # the loop refreshes about once a second
        if (await check(handler, "two"))[0] == OK:
            break
        await asyncio.sleep(0.1)
    assert (await check(handler, "two"))[0] == OK
    assert server.requests >= 2
    await handler.close()
    await handler.close()  # safe twice
    seen = server.requests
    await asyncio.sleep(1.2)
    assert server.requests == seen  # no refresh after close


async def test_a_rebuilt_handler_keeps_the_last_good_list_while_the_provider_is_down(
    make: Make, server: ListServer
) -> None:
    server.body = "mallory\n"
    old = make(providerUrl=server.url, blacklist=True, cachingInterval="10s")
    await old.start()
    server.status = 503
    new = make(providerUrl=server.url, blacklist=True, cachingInterval="20s")  # params changed: rebuilt
    new.take_over(old)
    await new.start()
    assert (await check(new, "mallory"))[0] == PERMISSION_DENIED
    other_kind = make(providerUrl=server.url, blacklist=True, entryType="REGEX")
    other_kind.take_over(old)  # a list of another kind is not carried over
    await other_kind.start()
    assert (await check(other_kind, "mallory"))[0] == UNAVAILABLE


def test_ip_index_agrees_with_plain_containment() -> None:
    import random

    from adapters.list.entries import NetworkEntries, parse_network

    rng = random.Random(11)
    networks = [parse_network(f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(256)}/{rng.randrange(8, 33)}")
                for _ in range(300)]
    networks += [parse_network(f"2001:db8:{rng.randrange(16):x}::/{rng.randrange(32, 129)}") for _ in range(50)]
    entries = NetworkEntries(networks)
    for _ in range(3000):
        if rng.random() < 0.8:
            address = ipaddress.ip_address(f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(256)}")
        else:
            address = ipaddress.ip_address(f"2001:db8:{rng.randrange(16):x}::{rng.randrange(65536):x}")
        assert (address in entries) == any(address in network for network in networks), address
    everything = NetworkEntries([parse_network("0.0.0.0/0")])
    assert "203.0.113.9" in everything and "::1" not in everything
    assert len(NetworkEntries([parse_network("10.0.0.0/8"), parse_network("10.0.0.0/8")])) == 1
