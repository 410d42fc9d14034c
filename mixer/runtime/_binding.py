"""Bind each (handler, template) pair to the handler's typed method once, when a snapshot is built.

The SDK's protocols (``MetricHandler``, ``AuthorizationHandler``, ``QuotaHandler`` ...) say which
method serves which template; a handler that claims a template but lacks its method fails here, at
config load, instead of on every batch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mixer.sdk import (
    AuthorizationHandler,
    CheckNothingHandler,
    CheckResult,
    Handler,
    Instance,
    ListEntryHandler,
    LogEntryHandler,
    MetricHandler,
    QuotaArgs,
    QuotaHandler,
    QuotaResult,
    ReportNothingHandler,
    TraceSpanHandler,
)

ReportCall = Callable[[list[Any]], None]
CheckCall = Callable[[Instance], Awaitable[CheckResult]]
QuotaCall = Callable[[Instance, QuotaArgs], Awaitable[QuotaResult]]


class HandlerMismatch(TypeError):
    """An adapter claims a template its handler does not implement (an adapter bug)."""

    def __init__(self, handler_name: str, handler: Handler, template: str, method: str) -> None:
        super().__init__(
            f"handler {handler_name} ({type(handler).__name__}) serves template {template!r} "
            f"but has no {method}()"
        )


def report_call(name: str, handler: Handler, template: str) -> ReportCall:
    if template == "metric" and isinstance(handler, MetricHandler):
        return handler.handle_metric
    if template == "logentry" and isinstance(handler, LogEntryHandler):
        return handler.handle_logentry
    if template == "tracespan" and isinstance(handler, TraceSpanHandler):
        return handler.handle_tracespan
    if template == "reportnothing" and isinstance(handler, ReportNothingHandler):
        return handler.handle_reportnothing
    raise HandlerMismatch(name, handler, template, f"handle_{template}")


def check_call(name: str, handler: Handler, template: str) -> CheckCall:
    if template == "authorization" and isinstance(handler, AuthorizationHandler):
        return handler.check_authorization
    if template == "listentry" and isinstance(handler, ListEntryHandler):
        return handler.check_listentry
    if template == "checknothing" and isinstance(handler, CheckNothingHandler):
        return handler.check_checknothing
    raise HandlerMismatch(name, handler, template, f"check_{template}")


def quota_call(name: str, handler: Handler, template: str) -> QuotaCall:
    if template == "quota" and isinstance(handler, QuotaHandler):
        return handler.allocate_quota
    raise HandlerMismatch(name, handler, template, "allocate_quota")
