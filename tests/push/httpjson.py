"""httpjson: a push adapter that posts logentry instances as a JSON array to a URL.

The README's "Writing an adapter" example, run by the tests against a loopback server: how a push
adapter embeds the shared ``delivery:`` block and implements only ``send``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from mixer.push import DeliverySettings, PermanentError, PushHandler, RetryableError, parse_delivery
from mixer.sdk import Adapter, Env, Instance, InstanceSchema, ParamsError, unknown_fields


@dataclass(frozen=True)
class HttpJsonParams:
    url: str
    delivery: DeliverySettings = field(default_factory=DeliverySettings)


class HttpJsonHandler(PushHandler[dict[str, Any]]):
    def __init__(self, params: HttpJsonParams, env: Env) -> None:
        super().__init__(params.delivery, env)
        self.url = params.url
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        await super().start()

    async def close(self) -> None:
        await super().close()  # drains the queue first: the session is still needed
        if self.session is not None:
            await self.session.close()

    def handle_logentry(self, instances: Sequence[Instance]) -> None:
        self.queue.offer([{"instance": i.name, **i.fields} for i in instances])

    async def send(self, batch: list[dict[str, Any]]) -> None:
        assert self.session is not None, "send runs only after start"
        body = orjson.dumps(batch, default=str)
        async with self.session.post(self.url, data=body, headers={"Content-Type": "application/json"}) as reply:
            if reply.status in (429, 502, 503, 504):
                retry_after = reply.headers.get("Retry-After")
                raise RetryableError(f"HTTP {reply.status}", float(retry_after) if retry_after else None)
            if 400 <= reply.status < 500:
                raise PermanentError(f"HTTP {reply.status}: {await reply.text()}")
            reply.raise_for_status()  # any other failure is retried
            rejected = (await reply.json()).get("rejected", 0)
            if rejected:  # a partial success: the rest of the batch was accepted
                raise PermanentError("backend rejected part of the batch", rejected=rejected)


class HttpJsonAdapter(Adapter):
    name = "httpjson"
    templates = frozenset({"logentry"})

    def parse_params(self, raw: Mapping[str, Any]) -> HttpJsonParams:
        problems = unknown_fields(raw, ("url", "delivery"))
        url = raw.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            problems.append(("url", f"must be an http:// or https:// URL, got {url!r}"))
        delivery, delivery_problems = parse_delivery(raw.get("delivery"))
        problems += delivery_problems
        if problems:
            raise ParamsError(problems)
        assert isinstance(url, str)
        return HttpJsonParams(url, delivery)

    def build(self, params: HttpJsonParams, env: Env, instances: Mapping[str, InstanceSchema]) -> HttpJsonHandler:
        return HttpJsonHandler(params, env)
