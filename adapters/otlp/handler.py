"""The otlp handler: tracespan instances to an OTLP traces endpoint, logentry instances to an OTLP
logs endpoint, each through its own push queue (so a logs backend that is down holds up no spans)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from adapters.otlp.config import OtlpParams
from adapters.otlp.convert import (
    InvalidInstance,
    keeps,
    logentry_to_record,
    logs_request,
    span_ids,
    traces_request,
    tracespan_to_span,
)
from adapters.otlp.transport import transport_for
from mixer.push import PermanentError, PushHandler, PushQueue
from mixer.sdk import Env, Instance

SpanItem = tuple[str, bytes]  # (resource service name, the encoded span)
LogItem = tuple[tuple[tuple[str, str], ...], logs_pb2.LogRecord]

SAMPLED_OUT = "sampled_out"  # a trace the sampling ratio did not keep
INVALID = "invalid_instance"  # an instance with a malformed id


class OtlpHandler(PushHandler[SpanItem]):
    """``queue`` carries spans, ``logs`` log records; both count under this handler's name."""

    def __init__(self, params: OtlpParams, env: Env) -> None:
        super().__init__(params.delivery, env, _span_size)
        self.params = params
        self.transport = transport_for(params)
        self.logs: PushQueue[LogItem] = PushQueue(self.send_logs, params.delivery, env)
        self._logged_invalid = False

    async def start(self) -> None:
        await self.transport.start()
        await super().start()
        await self.logs.start()

    async def close(self) -> None:
        await super().close()  # drains the queues first: the transport is still needed
        await self.logs.close()
        await self.transport.close()

    def _queue_for(self, template: str) -> PushQueue[Any]:
        return self.logs if template == "logentry" else self.queue

    def report_room(self, template: str) -> int | None:
        return self._queue_for(template).room()

    def refuse_reports(self, template: str, count: int) -> None:
        self._queue_for(template).refuse(count)

    def handle_tracespan(self, instances: Sequence[Instance]) -> None:
        ratio = self.params.sampling_ratio
        spans: list[SpanItem] = []
        invalid = sampled_out = 0
        # Encoding is most of a span's cost: while the backend is down and the queue full, the spans
        # that would be dropped as queue_full are counted so without being encoded.
        room = self.queue.room()
        no_room = 0
        for instance in instances:
            fields = instance.fields
            try:
                ids = span_ids(fields)
            except InvalidInstance as exc:
                invalid += 1
                self._log_invalid(instance.name, exc)
                continue
            if not keeps(ids[0], ratio):
                sampled_out += 1
                continue
            if len(spans) < room:
                spans.append(tracespan_to_span(fields, ids))
            else:
                no_room += 1
        if invalid:
            self.env.count_dropped(invalid, INVALID)
        if sampled_out:
            self.env.count_dropped(sampled_out, SAMPLED_OUT)
        self.queue.offer(spans)
        self.queue.refuse(no_room)

    def handle_logentry(self, instances: Sequence[Instance]) -> None:
        now = int(self.env.clock() * 1e9)
        self.logs.offer([logentry_to_record(i.name, i.fields, now) for i in instances])

    async def send(self, batch: list[SpanItem]) -> None:
        answer = await self.transport.export("traces", traces_request(batch), self.params.delivery.timeout)
        response = trace_service_pb2.ExportTraceServiceResponse.FromString(answer)
        _partial(response.partial_success.rejected_spans, response.partial_success.error_message)

    async def send_logs(self, batch: list[LogItem]) -> None:
        answer = await self.transport.export("logs", logs_request(batch), self.params.delivery.timeout)
        response = logs_service_pb2.ExportLogsServiceResponse.FromString(answer)
        _partial(response.partial_success.rejected_log_records, response.partial_success.error_message)

    def _log_invalid(self, instance: str, exc: Exception) -> None:
        if not self._logged_invalid:  # once per handler: the counter tells how many followed
            self._logged_invalid = True
            self.env.logger.warning("%s: dropping %s instances it cannot send: %s", self.env.handler_name, instance, exc)


def _span_size(item: SpanItem) -> int:
    """Bytes a queued span holds (its encoding), for ``delivery.queueBytes``."""
    return len(item[1]) + 64


def _partial(rejected: Any, message: str) -> None:
    """OTLP's partial success: the backend kept all but ``rejected`` items."""
    if rejected:
        raise PermanentError(f"backend rejected {rejected}: {message}", rejected=int(rejected))
