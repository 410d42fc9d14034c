"""A loopback fake of Cloud Monitoring's MetricService, for tests, benchmarks and the demo.

It speaks the real gRPC service (``google.monitoring.v3.MetricService``) with the client library's own
message types, through grpc generic handlers, and enforces the rules the real service enforces on
``CreateTimeSeries``: at most 200 series per request, exactly one point per series, one point per
series per request, a descriptor known for the metric type, kind and value type matching it,
intervals shaped for the kind, and points of a series written in time order. A request with bad
series writes the good ones and answers INVALID_ARGUMENT carrying a ``CreateTimeSeriesSummary``,
as the real service does. Tests can make it answer a status for a while (``fail_next``) or refuse
chosen series (``reject``).

    fake = FakeMetricService()
    port = fake.start()          # 127.0.0.1:<port>, plaintext
    ...                          # point the adapter at it (endpoint + insecure)
    fake.points("custom.googleapis.com/x")
    fake.stop()
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.api import metric_pb2
from google.cloud.monitoring_v3.types import metric as metric_types
from google.cloud.monitoring_v3.types import metric_service
from google.protobuf import any_pb2, empty_pb2
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

__all__ = ["BUILTIN_PREFIXES", "FakeMetricService", "SeriesKey", "series_key"]

TimeSeriesPb: Any = metric_types.TimeSeries.pb()
CreateTimeSeriesRequestPb: Any = metric_service.CreateTimeSeriesRequest.pb()
CreateTimeSeriesSummaryPb: Any = metric_service.CreateTimeSeriesSummary.pb()
GetMetricDescriptorRequestPb: Any = metric_service.GetMetricDescriptorRequest.pb()
CreateMetricDescriptorRequestPb: Any = metric_service.CreateMetricDescriptorRequest.pb()

SERVICE = "google.monitoring.v3.MetricService"
MAX_SERIES_PER_REQUEST = 200
# Metric types Google defines itself: found without being created (Istio's are among them).
BUILTIN_PREFIXES = ("istio.io/",)

SeriesKey = tuple[str, tuple[tuple[str, str], ...], str, tuple[tuple[str, str], ...]]


def series_key(ts: Any) -> SeriesKey:
    """What makes a time series one series: metric type and labels, resource type and labels."""
    return (
        ts.metric.type,
        tuple(sorted(ts.metric.labels.items())),
        ts.resource.type,
        tuple(sorted(ts.resource.labels.items())),
    )


def _micros(ts: Any) -> int:
    return int(ts.seconds) * 1_000_000 + int(ts.nanos) // 1000


@dataclass
class _Failure:
    code: grpc.StatusCode
    remaining: int
    message: str


@dataclass
class FakeMetricService:
    """The fake's state; every method may be called from any thread."""

    descriptors: dict[str, Any] = field(default_factory=dict)  # metric type -> MetricDescriptor pb
    requests: list[Any] = field(default_factory=list)  # every CreateTimeSeriesRequest pb received
    written: list[Any] = field(default_factory=list)  # every TimeSeries pb accepted, in order
    descriptor_creates: list[str] = field(default_factory=list)  # metric types, per create call
    calls: dict[str, int] = field(default_factory=dict)  # method name -> calls answered

    def __post_init__(self) -> None:
        self._lock = threading.RLock()  # reentrant: wait_for predicates read through the public methods
        self._changed = threading.Condition(self._lock)
        self._failures: list[_Failure] = []
        self._reject: Callable[[Any], str | None] | None = None
        self._last_end: dict[SeriesKey, int] = {}  # series -> end of its last point, in microseconds
        self._server: grpc.Server | None = None
        self.port = 0

    # -- control -----------------------------------------------------------------------------

    def start(self, port: int = 0) -> int:
        """Serve on 127.0.0.1:``port`` (0: a free one); returns the port."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            "CreateTimeSeries": grpc.unary_unary_rpc_method_handler(
                self._create_time_series,
                request_deserializer=CreateTimeSeriesRequestPb.FromString,
                response_serializer=empty_pb2.Empty.SerializeToString,
            ),
            "GetMetricDescriptor": grpc.unary_unary_rpc_method_handler(
                self._get_descriptor,
                request_deserializer=GetMetricDescriptorRequestPb.FromString,
                response_serializer=metric_pb2.MetricDescriptor.SerializeToString,
            ),
            "CreateMetricDescriptor": grpc.unary_unary_rpc_method_handler(
                self._create_descriptor,
                request_deserializer=CreateMetricDescriptorRequestPb.FromString,
                response_serializer=metric_pb2.MetricDescriptor.SerializeToString,
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        self._server = server
        return self.port

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def fail_next(self, code: grpc.StatusCode, times: int = 1, message: str = "") -> None:
        """Answer the next ``times`` calls (any method) with ``code`` and write nothing."""
        with self._lock:
            self._failures.append(_Failure(code, times, message or f"fake: {code.name}"))

    def reject(self, why: Callable[[Any], str | None] | None) -> None:
        """Refuse every TimeSeries for which ``why(ts)`` returns a message (None: accept)."""
        with self._lock:
            self._reject = why

    def wait_for(self, predicate: Callable[[FakeMetricService], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate(self)`` holds after a call (or now); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    # -- reading what was written ----------------------------------------------------------

    def series(self, metric_type: str | None = None) -> dict[SeriesKey, list[Any]]:
        """Accepted points (TimeSeries pbs) grouped by series, in arrival order."""
        with self._lock:
            out: dict[SeriesKey, list[Any]] = {}
            for ts in self.written:
                if metric_type is None or ts.metric.type == metric_type:
                    out.setdefault(series_key(ts), []).append(ts)
            return out

    @property
    def points_written(self) -> int:
        with self._lock:
            return len(self.written)

    # -- the service -------------------------------------------------------------------------

    def _answer_failure(self, context: grpc.ServicerContext, method: str) -> None:
        """Count the call; abort it when a failure is scheduled (call without the lock)."""
        with self._lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            failure = self._failures[0] if self._failures else None
            if failure is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.pop(0)
                self._changed.notify_all()
        if failure is not None:
            context.abort(failure.code, failure.message)

    def _get_descriptor(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._answer_failure(context, "GetMetricDescriptor")
        with self._lock:
            metric_type = request.name.split("/metricDescriptors/", 1)[-1]
            found = self.descriptors.get(metric_type)
            if found is None and metric_type.startswith(BUILTIN_PREFIXES):
                found = metric_pb2.MetricDescriptor(type=metric_type, name=request.name)
            self._changed.notify_all()
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Could not find descriptor for metric '{metric_type}'.")
        return found

    def _create_descriptor(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._answer_failure(context, "CreateMetricDescriptor")
        with self._lock:
            descriptor = metric_pb2.MetricDescriptor()
            descriptor.CopyFrom(request.metric_descriptor)
            problem = _descriptor_problem(descriptor)
            if problem is None:
                descriptor.name = f"{request.name}/metricDescriptors/{descriptor.type}"
                self.descriptors[descriptor.type] = descriptor
                self.descriptor_creates.append(descriptor.type)
            self._changed.notify_all()
        if problem is not None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        return descriptor

    def _create_time_series(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._answer_failure(context, "CreateTimeSeries")
        with self._lock:
            copy = CreateTimeSeriesRequestPb()
            copy.CopyFrom(request)
            self.requests.append(copy)
            if len(request.time_series) > MAX_SERIES_PER_REQUEST:
                self._changed.notify_all()
                message = f"Too many time series: {len(request.time_series)} > {MAX_SERIES_PER_REQUEST}"
                bad_request = True
            else:
                bad_request = False
                errors = self._write(request)
                self._changed.notify_all()
        if bad_request:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
        if errors:
            _abort_partial(context, len(request.time_series), errors)
        return empty_pb2.Empty()

    def _write(self, request: Any) -> list[tuple[int, str]]:
        """Accept the good series; return (index, message) for each refused one."""
        errors: list[tuple[int, str]] = []
        seen: set[SeriesKey] = set()
        for index, ts in enumerate(request.time_series):
            key = series_key(ts)
            problem = None
            if key in seen:
                problem = "Field timeSeries[{i}] had a duplicate series: one point per series per request"
            seen.add(key)
            problem = problem or self._series_problem(ts, key)
            if problem is None and self._reject is not None:
                problem = self._reject(ts)
            if problem is not None:
                errors.append((index, problem.format(i=index)))
                continue
            self._last_end[key] = _micros(ts.points[0].interval.end_time)
            stored = TimeSeriesPb()
            stored.CopyFrom(ts)
            self.written.append(stored)
        return errors

    def _series_problem(self, ts: Any, key: SeriesKey) -> str | None:
        if len(ts.points) != 1:
            return f"Field timeSeries[{{i}}].points must have exactly one point, got {len(ts.points)}"
        descriptor = self.descriptors.get(ts.metric.type)
        if descriptor is None and not ts.metric.type.startswith(BUILTIN_PREFIXES):
            return f"timeSeries[{{i}}]: no metric descriptor for {ts.metric.type!r}"
        if descriptor is not None:
            if ts.metric_kind and ts.metric_kind != descriptor.metric_kind:
                return "timeSeries[{i}]: metric kind does not match the descriptor"
            if ts.value_type and ts.value_type != descriptor.value_type:
                return "timeSeries[{i}]: value type does not match the descriptor"
            known = {label.key for label in descriptor.labels}
            unknown = sorted(set(ts.metric.labels) - known)
            if unknown:
                return f"timeSeries[{{i}}]: labels not in the descriptor: {', '.join(unknown)}"
        if not ts.resource.type:
            return "timeSeries[{i}]: missing monitored resource type"
        interval = ts.points[0].interval
        start, end = _micros(interval.start_time), _micros(interval.end_time)
        kind = ts.metric_kind or (descriptor.metric_kind if descriptor is not None else 0)
        if kind == metric_pb2.MetricDescriptor.GAUGE and interval.HasField("start_time") and start != end:
            return "timeSeries[{i}]: a GAUGE point's start time must equal its end time"
        if kind in (metric_pb2.MetricDescriptor.DELTA, metric_pb2.MetricDescriptor.CUMULATIVE) and start >= end:
            return "timeSeries[{i}]: the start time must be before the end time"
        last = self._last_end.get(key)
        if last is not None and end <= last:
            return ("timeSeries[{i}]: Points must be written in order. One or more of the points specified "
                    "had an older start time than the most recent point.")
        return None


def _descriptor_problem(descriptor: Any) -> str | None:
    if not descriptor.type or "/" not in descriptor.type:
        return f"invalid metric type {descriptor.type!r}"
    if descriptor.metric_kind == metric_pb2.MetricDescriptor.METRIC_KIND_UNSPECIFIED:
        return "metric_kind is required"
    if descriptor.value_type == metric_pb2.MetricDescriptor.VALUE_TYPE_UNSPECIFIED:
        return "value_type is required"
    if not re.fullmatch(r"[a-zA-Z0-9_./-]+", descriptor.type):
        return f"invalid metric type {descriptor.type!r}"
    return None


def _abort_partial(context: grpc.ServicerContext, total: int, errors: list[tuple[int, str]]) -> None:
    """Answer as the real service does when some series were refused: INVALID_ARGUMENT, the
    indices in the message, a CreateTimeSeriesSummary in the status details."""
    summary = CreateTimeSeriesSummaryPb(total_point_count=total, success_point_count=total - len(errors))
    error = summary.errors.add()
    error.status.code = code_pb2.INVALID_ARGUMENT
    error.point_count = len(errors)
    detail = any_pb2.Any()
    detail.Pack(summary)
    # The service names a few of the refused series, not all: status trailers have a size limit.
    shown = "; ".join(m for _, m in errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
    message = "One or more TimeSeries could not be written: " + shown
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message, details=[detail])
    context.abort_with_status(rpc_status.to_status(status))


def main(argv: list[str] | None = None) -> int:
    """``python -m adapters.stackdriver.fake --port N``: serve until SIGTERM or SIGINT (benchmarks run
    it in a process of its own, so its work does not count as the adapter's; the demo too)."""
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(description="a loopback fake of Cloud Monitoring's MetricService")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    args = parser.parse_args(argv)
    fake = FakeMetricService()
    fake.start(args.port)
    print(f"fake MetricService on {fake.endpoint}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    fake.stop()
    print(f"fake MetricService: {fake.points_written} points written, {len(fake.requests)} requests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
