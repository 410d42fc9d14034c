"""The list handler: answers listentry checks from its overrides and its provider's last good list."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from pathlib import Path
from typing import Any

import aiohttp

from adapters.list.config import MAX_LIST_BYTES, ListParams
from adapters.list.entries import BadValue, Entries, parse_entries, parse_list_text
from mixer.sdk import (
    INVALID_ARGUMENT,
    NOT_FOUND,
    OK,
    PERMISSION_DENIED,
    UNAVAILABLE,
    CheckResult,
    Env,
    Handler,
    Instance,
)

_FETCH_TIMEOUT = 30.0  # seconds; a slow provider must not stall the refresh loop longer


class FetchError(Exception):
    """The provider's list could not be had this time (the last good list stays in use)."""


class ListHandler(Handler):
    """Overrides are consulted first; then the list fetched from ``providerUrl``.

    The provider's list is fetched once in ``start`` and then every ``refreshInterval``. A failed
    refresh is logged and counted (``mixer_handler_refresh_failures_total{handler}``) and the last good
    list keeps answering until it is older than ``ttl`` (Mixer's purge); with no usable list a check
    that the overrides do not decide answers UNAVAILABLE, which denies.
    """

    def __init__(self, params: ListParams, env: Env) -> None:
        self.params = params
        self.env = env
        self.log: logging.Logger = env.logger
        self.overrides: Entries = parse_entries(params.entry_type, params.overrides)
        self.provided: Entries | None = None
        self.fetched_at: float | None = None  # env.clock() of the last good fetch
        self.last_error = "no list fetched yet"
        self._digest = b""
        self._session: aiohttp.ClientSession | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._failures = env.metrics.handler_refresh_failures.labels(env.handler_name)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.params.provider_url:
            return
        if self.params.provider_path is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_FETCH_TIMEOUT))
        await self.refresh()  # ready to answer from the first check on, as Mixer was
        self._loop_task = asyncio.get_running_loop().create_task(self._refresh_forever())

    def take_over(self, previous: Handler) -> None:
        """Keep the last good list across a rebuild from the same provider, so a provider that is
        down while the config changes does not leave the new handler without a list."""
        if (isinstance(previous, ListHandler) and previous.provided is not None
                and previous.params.provider_url == self.params.provider_url
                and previous.params.entry_type is self.params.entry_type):
            self.provided, self.fetched_at = previous.provided, previous.fetched_at
            self._digest, self.last_error = previous._digest, previous.last_error

    async def close(self) -> None:
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _refresh_forever(self) -> None:
        interval = self.params.refresh_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            await self.refresh()

    # -- fetching -------------------------------------------------------------------------------

    async def refresh(self) -> bool:
        """Fetch and install the provider's list; on failure keep the last good one. Never raises."""
        try:
            body = await self._fetch()
            digest = hashlib.sha256(body).digest()
            if digest != self._digest or self.provided is None:
                lines = parse_list_text(self.params.entry_type, _decode(body))
                self.provided = parse_entries(self.params.entry_type, lines)
                self._digest = digest
                self.log.info("list %s: installed %d entries from %s", self.env.handler_name,
                              len(self.provided), self.params.provider_url)
        except (FetchError, ValueError) as exc:
            self._failed(str(exc))
            return False
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            return False
        self.fetched_at = self.env.clock()
        return True

    def _failed(self, reason: str) -> None:
        self.last_error = f"refreshing from {self.params.provider_url} failed: {reason}"
        self._failures.inc()
        keeping = "keeping the last good list" if self.provided is not None else "no list to serve"
        self.log.warning("list %s: %s (%s)", self.env.handler_name, self.last_error, keeping)

    async def _fetch(self) -> bytes:
        path = self.params.provider_path
        if path is not None:
            return await asyncio.to_thread(_read_file, path)
        assert self._session is not None, "start() opens the session"
        async with self._session.get(self.params.provider_url) as response:
            if response.status != 200:
                raise FetchError(f"HTTP {response.status}")
            if (response.content_length or 0) > MAX_LIST_BYTES:
                raise FetchError(f"list of {response.content_length} bytes exceeds {MAX_LIST_BYTES}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > MAX_LIST_BYTES:
                    raise FetchError(f"list exceeds {MAX_LIST_BYTES} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

    def _usable(self) -> Entries | None:
        """The provider's list, unless it is older than ttl (then it is dropped, as Mixer purged it)."""
        if self.provided is None or self.fetched_at is None:
            return None
        age = self.env.clock() - self.fetched_at
        if age > self.params.ttl.total_seconds():
            self.log.warning("list %s: purged, not refreshed for %.0fs (ttl %s)", self.env.handler_name, age,
                             self.params.ttl)
            self.provided = None
            self.last_error = f"list expired (ttl {self.params.ttl}); last error: {self.last_error}"
            return None
        return self.provided

    # -- checks ---------------------------------------------------------------------------------

    async def check_listentry(self, instance: Instance) -> CheckResult:
        value: Any = instance.fields.get("value")
        if value is None:
            return self._answer(INVALID_ARGUMENT, f"instance {instance.name} has no value to check")
        try:
            found = value in self.overrides
            if not found and self.params.provider_url:
                provided = self._usable()
                if provided is None:
                    # Not cacheable: the next check should see the list as soon as a refresh succeeds.
                    return CheckResult(UNAVAILABLE, f"list {self.env.handler_name} is not available: "
                                       f"{self.last_error}", dt.timedelta(0), 0)
                found = value in provided
        except BadValue as exc:
            return self._answer(INVALID_ARGUMENT, str(exc))
        if self.params.blacklist:
            return self._answer(PERMISSION_DENIED, f"{value} is blacklisted") if found else self._answer(OK)
        return self._answer(OK) if found else self._answer(NOT_FOUND, f"{value} is not whitelisted")

    def _answer(self, code: int, message: str = "") -> CheckResult:
        return CheckResult(code, message, self.params.caching_interval, self.params.caching_use_count)


def _read_file(path: Path) -> bytes:
    with open(path, "rb") as file:
        body: bytes = file.read(MAX_LIST_BYTES + 1)
    if len(body) > MAX_LIST_BYTES:
        raise FetchError(f"{path} exceeds {MAX_LIST_BYTES} bytes")
    return body


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FetchError(f"list is not UTF-8 text: {exc}") from None
