"""The native HTTP API: POST /v1/report, POST /v1/check, GET /healthz, /readyz and /metrics."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from mixer.api import RequestError, check_response_json, parse_check, parse_report
from mixer.runtime import Runtime

MAX_BODY_BYTES = 16 * 1024 * 1024  # a report batch larger than this is refused, not buffered
FRONT_DOOR = "http"


def build_app(runtime: Runtime) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    routes = _Routes(runtime)
    app.router.add_post("/v1/report", routes.report)
    app.router.add_post("/v1/check", routes.check)
    app.router.add_get("/healthz", routes.healthz)
    app.router.add_get("/readyz", routes.readyz)
    app.router.add_get("/metrics", routes.metrics)
    return app


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


class _Routes:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RequestError(f"bad JSON: {exc}") from None

    async def report(self, request: web.Request) -> web.Response:
        if not self.runtime.ready:
            return _json({"error": "no config loaded yet"}, 503)
        try:
            parsed = parse_report(await self._body(request), self.runtime.manifest)
        except RequestError as exc:
            self.runtime.metrics.rejected_bags.labels(FRONT_DOOR).inc()
            return _json({"error": str(exc)}, 400)
        dispatched = self.runtime.report(parsed.bags, FRONT_DOOR) if parsed.bags else 0
        body = {"accepted": len(parsed.bags), "instances": dispatched}
        if parsed.rejected:
            self.runtime.metrics.rejected_bags.labels(FRONT_DOOR).inc(len(parsed.rejected))
            messages = "; ".join(f"bag {r['index']}: {r['error']}" for r in parsed.rejected)
            return _json({**body, "error": messages, "rejected": parsed.rejected}, 400)
        return _json(body)

    async def check(self, request: web.Request) -> web.Response:
        if not self.runtime.ready:
            return _json({"error": "no config loaded yet"}, 503)
        try:
            bag, quotas = parse_check(await self._body(request), self.runtime.manifest)
        except RequestError as exc:
            self.runtime.metrics.rejected_bags.labels(FRONT_DOOR).inc()
            return _json({"error": str(exc)}, 400)
        response = await self.runtime.check(bag, quotas, FRONT_DOOR)
        return _json(check_response_json(response))

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        if self.runtime.ready:
            return web.Response(text="ready\n")
        return web.Response(text="no config loaded\n", status=503)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.runtime.metrics.exposition(), content_type="text/plain", charset="utf-8")
