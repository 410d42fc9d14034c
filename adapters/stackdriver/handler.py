"""The stackdriver handler: aggregates metric instances per series and pushes one point per series
per push interval to Cloud Monitoring's CreateTimeSeries, through the shared push queue.

The queue's items are points (one TimeSeries each), so its counts (offered, sent, dropped by
reason) are in points: a point stands for every instance aggregated into it. Instances refused
before aggregation (a value that is no number, a series past the cap) are counted as they come.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.cloud.monitoring_v3.types import metric_service
from google.protobuf import any_pb2
from google.rpc import error_details_pb2

from adapters.stackdriver.client import RETRYABLE_CODES, make_client, status_code
from adapters.stackdriver.config import LABEL_KEY, MAX_LABELS, Params
from adapters.stackdriver.store import RESOURCE_LABELS, MetricStore, Resource, descriptor_for
from mixer.push import PermanentError, PushHandler, RetryableError
from mixer.sdk import Env, Handler, InstanceSchema, MetricInstance, ParamsError

__all__ = ["StackdriverHandler"]

CreateTimeSeriesRequest = metric_service.CreateTimeSeriesRequest
CreateTimeSeriesRequestPb: Any = CreateTimeSeriesRequest.pb()
SummaryPb: Any = metric_service.CreateTimeSeriesSummary.pb()

_SERIES_INDEX = re.compile(r"timeSeries\[(\d+)\]")


class StackdriverHandler(PushHandler[Any]):
    def __init__(self, params: Params, env: Env, instances: Mapping[str, InstanceSchema]) -> None:
        super().__init__(params.delivery, env)
        self.params = params
        self._clock = env.clock
        self.stores: dict[str, MetricStore] = {}
        problems: list[tuple[str, str]] = []
        fill = {"location": params.location, "cluster_name": params.cluster_name}
        for info in params.metrics:
            at = f"metricInfo[{info.instance_name}]"
            schema = instances.get(info.instance_name)
            if schema is None:
                continue  # described but routed here by no rule: nothing will come
            if schema.template != "metric":
                problems.append((at, f"{schema.name} is a {schema.template}, not a metric"))
                continue
            labels = info.label_names if info.label_names is not None else schema.dimension_names
            missing = [label for label in labels if label not in schema.dimension_names]
            bad = [label for label in labels if not LABEL_KEY.match(label)]
            if info.label_names is None and (bad or len(labels) > MAX_LABELS):
                problems.append((f"{at}.labelNames", f"{schema.name}'s dimensions cannot all be labels "
                                 f"(at most {MAX_LABELS} keys like [a-z][a-z0-9_]*{'; not ' + ', '.join(bad) if bad else ''}): "
                                 "list the ones to keep"))
                continue
            if missing:
                problems.append((f"{at}.labelNames",
                                 f"{', '.join(missing)} not among {schema.name}'s dimensions ({', '.join(schema.dimension_names)})"))
                continue
            resource = Resource(schema.monitored_resource_type, schema.monitored_resource_dimension_names,
                                params.project_id, fill)
            problem = _resource_problem(resource, fill)
            if problem:
                problems.append((at, f"{schema.name}: {problem}"))
                continue
            self.stores[info.instance_name] = MetricStore(
                info, info.metric_type, labels, schema.dimension_names, resource, params.max_series, env.clock,
                params.series_expiry,
            )
        for name in sorted(set(instances) - {m.instance_name for m in params.metrics}):
            problems.append(("metricInfo", f"instance {name} is routed here but has no metricInfo entry"))
        if problems:
            raise ParamsError(problems)
        self._stores = list(self.stores.values())
        self._feeders = {name: store.add for name, store in self.stores.items()}
        self._by_type = {store.metric_type: store for store in self._stores}
        self._described: set[str] = set()  # metric types found or created at the service
        self._logged: set[tuple[str, str]] = set()  # (metric type, status) already logged
        self._client: Any = None
        self._ticker: asyncio.Task[None] | None = None
        self.deferred_flushes = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def take_over(self, previous: Handler) -> None:
        """Keep the series (cumulative start times and totals) of every metric whose definition did
        not change, so a reload is not a reset in Cloud Monitoring; descriptors found stay found."""
        if not isinstance(previous, StackdriverHandler):
            return
        for name, store in self.stores.items():
            old = previous.stores.get(name)
            if old is not None and old.definition() == store.definition():
                self.stores[name] = old
        self._stores = list(self.stores.values())
        self._feeders = {name: store.add for name, store in self.stores.items()}
        self._by_type = {store.metric_type: store for store in self._stores}
        self._described |= previous._described & set(self._by_type)

    async def start(self) -> None:
        if self._client is None:
            self._client = make_client(self.params)
        await super().start()
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(), name=f"stackdriver-push-{self.env.handler_name}")

    async def close(self) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            # What was aggregated since the last push goes out with the queue's drain.
            try:
                async with asyncio.timeout(self.params.delivery.shutdown_timeout):
                    await self.queue.flush()
            except TimeoutError:
                pass
            if not self.flush():
                # The backend never took the previous push: what was aggregated since is lost.
                lost = sum(store.moved() for store in self._stores)
                if lost:
                    self.env.count_dropped(lost, "shutdown")
        await super().close()
        client, self._client = self._client, None
        if client is not None:
            await client.transport.close()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.params.push_interval)
            self.flush()

    # -- the report path -------------------------------------------------------------------------

    def handle_metric(self, instances: Sequence[MetricInstance]) -> None:
        feeders = self._feeders
        unknown = 0
        for name, value, dimensions, resource in instances:
            add = feeders.get(name)
            if add is None:
                unknown += 1
                continue
            add(value, dimensions, resource)
        if unknown:
            self.env.count_dropped(unknown, "unknown_instance")
        self._account()

    def _account(self) -> None:
        """Report refused instances as drops once per batch, not per instance."""
        for store in self._stores:
            if store.rejected:
                self.env.count_dropped(store.rejected, "bad_value")
                store.rejected = 0
            if store.over_limit:
                self.env.count_dropped(store.over_limit, "series_limit")
                self._log_once(store.metric_type, "series_limit",
                               "%s: %s reached %d series; instances of new label sets are dropped",
                               self.env.handler_name, store.metric_type, store.max_series)
                store.over_limit = 0

    # -- push ------------------------------------------------------------------------------------

    def flush(self) -> int:
        """Offer one point per series fed since the last push; returns how many.

        Deferred (0) while the previous push is still queued or being sent: its points and the
        next ones must not share a request, and must reach the service in order. Meanwhile the
        stores keep aggregating, so nothing is lost by waiting.
        """
        if self.queue.queued or self.queue.in_flight:
            self.deferred_flushes += 1
            return 0
        now = self._clock()
        points: list[Any] = []
        for store in self._stores:
            store.collect(now, points)
        self.queue.offer(points)
        return len(points)

    async def send(self, batch: list[Any]) -> None:
        client = self._client
        if client is None:
            raise RetryableError("not started")
        timeout = self.params.delivery.timeout
        if len(self._described) < len(self._by_type):
            await self._describe(client, {ts.metric.type for ts in batch} - self._described, timeout)
        request = CreateTimeSeriesRequestPb(name=f"projects/{self.params.project_id}", time_series=batch)
        try:
            await client.create_time_series(request=CreateTimeSeriesRequest.wrap(request), retry=None, timeout=timeout)
        except api_exceptions.GoogleAPICallError as exc:
            raise self._failure(exc, batch) from exc

    async def _describe(self, client: Any, metric_types: set[str], timeout: float) -> None:
        """Find or create the descriptor of each metric type before its first point is written."""
        project = self.params.project_id
        for metric_type in sorted(metric_types):
            descriptor = descriptor_for(self._by_type[metric_type], project)
            try:
                try:
                    await client.get_metric_descriptor(name=descriptor.name, retry=None, timeout=timeout)
                except api_exceptions.NotFound:
                    await client.create_metric_descriptor(
                        request=metric_service.CreateMetricDescriptorRequest.wrap(
                            metric_service.CreateMetricDescriptorRequest.pb()(
                                name=f"projects/{project}", metric_descriptor=descriptor)
                        ),
                        retry=None, timeout=timeout,
                    )
            except api_exceptions.AlreadyExists:
                pass  # another replica created it meanwhile
            except api_exceptions.GoogleAPICallError as exc:
                if status_code(exc) in RETRYABLE_CODES:
                    raise RetryableError(f"metric descriptor {metric_type}: {exc.message}") from exc
                # Final (permission, invalid): let the writes tell which points the service refuses.
                self._log_once(metric_type, f"descriptor:{exc.code}", "%s: cannot find or create the descriptor of %s: %s",
                               self.env.handler_name, metric_type, exc.message)
            self._described.add(metric_type)

    def _failure(self, exc: api_exceptions.GoogleAPICallError, batch: list[Any]) -> Exception:
        """The helper's view of a failed write: retry it, or count what the service refused."""
        code = status_code(exc)
        summary = _summary(exc.details)
        if summary is not None and (summary.success_point_count > 0 or code not in RETRYABLE_CODES):
            rejected = summary.total_point_count - summary.success_point_count
            for metric_type in self._named_types(exc.message, batch):
                self._log_once(metric_type, str(exc.code), "%s: Cloud Monitoring refused points of %s: %s",
                               self.env.handler_name, metric_type, exc.message)
            return PermanentError(f"{rejected} of {len(batch)} points refused: {exc.message}", rejected=rejected)
        if code in RETRYABLE_CODES:
            return RetryableError(f"{exc.code}: {exc.message}", retry_after=_retry_after(exc.details))
        self._log_once("*", str(exc.code), "%s: Cloud Monitoring refused a request: %s", self.env.handler_name, exc.message)
        return PermanentError(f"{exc.code}: {exc.message}")

    def _named_types(self, message: str, batch: list[Any]) -> list[str]:
        """Metric types of the series the error message names by index (the service's way)."""
        types = {batch[int(i)].metric.type for i in _SERIES_INDEX.findall(message) if int(i) < len(batch)}
        return sorted(types) or ["*"]

    def _log_once(self, metric_type: str, status: str, message: str, *args: Any) -> None:
        """One line per metric type and status: the dropped counter tells how often after that."""
        if (metric_type, status) not in self._logged:
            self._logged.add((metric_type, status))
            self.env.logger.warning(message, *args)


def _summary(details: Sequence[Any]) -> Any:
    for detail in details or ():
        if isinstance(detail, any_pb2.Any) and detail.Is(SummaryPb.DESCRIPTOR):
            summary = SummaryPb()
            detail.Unpack(summary)
            return summary
    return None


def _retry_after(details: Sequence[Any]) -> float | None:
    for detail in details or ():
        if isinstance(detail, error_details_pb2.RetryInfo):
            return float(detail.retry_delay.seconds + detail.retry_delay.nanos / 1e9)
    return None


def _resource_problem(resource: Resource, fill: Mapping[str, str]) -> str | None:
    """Labels a known resource type requires but the instance does not give (nor params fill)."""
    required = RESOURCE_LABELS.get(resource.type)
    if required is None or resource.global_:
        return None
    given = set(resource.names)
    fillable = {"project_id"} | {name for name, value in fill.items() if value}
    missing = [name for name in required if name not in given and name not in fillable]
    extra = sorted(given - set(required))
    if missing:
        return f"monitored resource {resource.type} needs {', '.join(missing)} among monitoredResourceDimensions"
    if extra:
        return f"monitored resource {resource.type} has no label {', '.join(extra)} (it has {', '.join(required)})"
    return None
