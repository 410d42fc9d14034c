"""A loopback OTLP receiver for the adapter's tests: a real grpc.aio server (TraceService and
LogsService) and a real aiohttp server (/v1/traces, /v1/logs) that record what they accept and
fail on purpose when told to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from mixer.processes import free_port

TRACES = "opentelemetry.proto.collector.trace.v1.TraceService"
LOGS = "opentelemetry.proto.collector.logs.v1.LogsService"


@dataclass
class Failure:
    """Answer the next ``times`` exports with this instead of accepting them."""

    times: int
    grpc_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    http_status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    reject: int = 0  # accept, but answer partial success rejecting this many


class Receiver:
    def __init__(self) -> None:
        self.traces: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.logs: list[logs_service_pb2.ExportLogsServiceRequest] = []
        self.failures: list[Failure] = []
        self.attempts = 0
        self.metadata: list[dict[str, str]] = []
        self.grpc_port = free_port()
        self.http_port = free_port()
        self._grpc: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every accepted span, in arrival order."""
        return [
            ({kv.key: kv.value.string_value for kv in rs.resource.attributes}, span)
            for request in self.traces for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans
        ]

    def records(self) -> list[tuple[dict[str, Any], Any]]:
        return [
            ({kv.key: kv.value.string_value for kv in rl.resource.attributes}, record)
            for request in self.logs for rl in request.resource_logs for sl in rl.scope_logs for record in sl.log_records
        ]

    def _next_failure(self) -> Failure | None:
        self.attempts += 1
        if self.failures and self.failures[0].times > 0:
            failure = self.failures[0]
            failure.times -= 1
            if failure.times == 0:
                self.failures.pop(0)
            return failure
        return None

    def _accept(self, signal: str, raw: bytes, failure: Failure | None) -> bytes:
        if signal == "traces":
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(raw)
            self.traces.append(request)
            answer = trace_service_pb2.ExportTraceServiceResponse()
            if failure is not None and failure.reject:
                answer.partial_success.rejected_spans = failure.reject
                answer.partial_success.error_message = "too old"
            return bytes(answer.SerializeToString())
        logs_request = logs_service_pb2.ExportLogsServiceRequest.FromString(raw)
        self.logs.append(logs_request)
        logs_answer = logs_service_pb2.ExportLogsServiceResponse()
        if failure is not None and failure.reject:
            logs_answer.partial_success.rejected_log_records = failure.reject
        return bytes(logs_answer.SerializeToString())

    def _grpc_method(self, signal: str) -> Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Any]:
        async def export(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            self.metadata.append({k: v for k, v in context.invocation_metadata() or ()})
            failure = self._next_failure()
            if failure is not None and not failure.reject:
                await context.abort(failure.grpc_code, "failing on purpose")
            return self._accept(signal, raw, failure)

        return export

    async def _http_export(self, request: web.Request) -> web.Response:
        signal = request.match_info["signal"]
        self.metadata.append(dict(request.headers))
        raw = await request.read()  # aiohttp undoes Content-Encoding: gzip
        failure = self._next_failure()
        if failure is not None and not failure.reject:
            return web.Response(status=failure.http_status, text="failing on purpose", headers=failure.headers)
        return web.Response(body=self._accept(signal, raw, failure), content_type="application/x-protobuf")

    async def start(self) -> None:
        server = grpc.aio.server()
        for service, signal in ((TRACES, "traces"), (LOGS, "logs")):
            handler = grpc.unary_unary_rpc_method_handler(self._grpc_method(signal))
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {"Export": handler}),))
        server.add_insecure_port(self.grpc_endpoint)
        await server.start()
        self._grpc = server
        app = web.Application()
        app.router.add_post("/v1/{signal}", self._http_export)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.http_port).start()
        self._http = runner

    async def stop(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(0)
        if self._http is not None:
            await self._http.cleanup()
