"""The collector's own metrics, in a registry the runtime owns (never the module-level default)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.exposition import generate_latest

from mixer.hotmetrics import CounterFamily, CounterSeries, HistogramFamily, HistogramSeries, Rollup

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# Istio Mixer's own names and labels for its dispatch metrics, so Istio 1.4's mixer dashboard reads them.
_RUNTIME_LABELS = ["handler", "adapter", "meshFunction", "error"]
_CONFIG_SIZES = {
    "rule_config_count": "Rules",
    "instance_config_count": "Instances",
    "handler_config_count": "Handlers",
    "attribute_count": "Attributes in the manifest",
}


def build_tag() -> str:
    """This collector's version, as ``istio_build``'s ``tag``."""
    try:
        return version("mixer")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


class DispatchSeries:
    """What one (handler, adapter, template) call records: one observation in Istio Mixer's
    ``mixer_runtime_dispatch_duration_seconds`` (``error`` false, or true for a call that raised),
    from which every dispatch family is summed at scrape (``SelfMetrics``). Resolved when the
    snapshot is built; its series are made on its first call (and the failure series on its first
    failure), so a handler that was never called has none, as before."""

    __slots__ = ("_durations", "_labels", "_ok", "_failed")

    def __init__(self, durations: HistogramFamily, handler: str, adapter: str, template: str) -> None:
        self._durations = durations
        self._labels = (handler, adapter, template)
        self._ok: HistogramSeries | None = None
        self._failed: HistogramSeries | None = None

    def dispatched(self, seconds: float, failed: bool) -> None:
        series = self._ok or self._first_call()
        if failed:
            series = self._failed or self._first_failure()
        series.observe(seconds)

    def _first_call(self) -> HistogramSeries:
        # error="false" is made by the first call even when that call fails: the series /metrics has always shown
        self._ok = self._durations.labels(*self._labels, "false")
        return self._ok

    def _first_failure(self) -> HistogramSeries:
        self._failed = self._durations.labels(*self._labels, "true")
        return self._failed


def _failed_call(labels: tuple[str, ...]) -> bool:
    return labels[3] == "true"  # the ``error`` label of mixer_runtime_dispatch_duration_seconds


class SelfMetrics:
    """The collector's own metrics. Those updated per check or per handler call (reports, checks,
    the check cache, dispatches) are ``mixer.hotmetrics`` families: plain arithmetic when updated,
    formatted when scraped; the rest are prometheus_client's. Every family is registered in the
    order /metrics has always listed them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # Every handler call is one observation here (Istio Mixer's names, registered further down
        # where it has always been listed); the mixer's own dispatch families are summed from it.
        self.runtime_dispatch_duration = HistogramFamily(
            "mixer_runtime_dispatch_duration_seconds",
            "Time spent in one handler call, as Istio Mixer measured it",
            _RUNTIME_LABELS,
            buckets=_LATENCY_BUCKETS,
        )
        durations = self.runtime_dispatch_duration
        self.reports = CounterFamily("mixer_reports", "Attribute bags received for report", ["front_door"], registry=r)
        self.checks = CounterFamily("mixer_checks", "Check requests answered", ["front_door", "result"], registry=r)
        self.dispatches = Rollup(
            durations, "mixer_dispatches", "Handler calls", "counter", ["handler", "adapter", "template"], (0, 1, 2),
            registry=r,
        )
        self.dispatch_errors = Rollup(
            durations, "mixer_dispatch_errors", "Handler calls that raised", "counter", ["handler", "adapter"], (0, 1),
            where=_failed_call, registry=r,
        )
        self.dispatch_duration = Rollup(
            durations, "mixer_dispatch_duration_seconds", "Time spent in one handler call", "histogram",
            ["handler", "adapter"], (0, 1), registry=r,
        )
        self.evaluation_errors = Counter(
            "mixer_evaluation_errors", "Expression evaluations that failed", ["instance"], registry=r
        )
        self.dropped_instances = Counter(
            "mixer_dropped_instances", "Instances a handler could not deliver", ["handler", "reason"], registry=r
        )
        self.sent_instances = Counter(
            "mixer_sent_instances", "Instances a push handler delivered to its backend", ["handler"], registry=r
        )
        self.rejected_bags = Counter(
            "mixer_rejected_bags", "Bags rejected at a front door as malformed", ["front_door"], registry=r
        )
        self.shed_requests = Counter(
            "mixer_shed_requests",
            "Requests refused at a limit (HTTP 429, gRPC RESOURCE_EXHAUSTED); reason names the limit",
            ["front_door", "reason"],
            registry=r,
        )
        self.queue_depth = Gauge("mixer_queue_depth", "Items waiting in a handler's queue", ["handler"], registry=r)
        self.handler_refresh_failures = Counter(
            "mixer_handler_refresh_failures",
            "Background refreshes of a handler's data (a list from its provider) that failed; the last good data stays",
            ["handler"],
            registry=r,
        )
        self.check_cache = CounterFamily(
            "mixer_check_cache", "Check verdicts looked up in the mixer's check cache", ["result"], registry=r
        )
        self.check_cache_evictions: CounterSeries = CounterFamily(
            "mixer_check_cache_evictions", "Live check verdicts evicted because the cache was full", registry=r
        ).labels()
        self.config_loads = Counter("mixer_config_loads", "Config load attempts", ["result"], registry=r)
        # Kafka between front doors and workers (mixer.kafka): published by front doors, consumed by workers
        self.kafka_published = Counter(
            "mixer_kafka_published_bags", "Bags a front door published to Kafka (acknowledged by every replica)",
            ["topic"], registry=r,
        )
        self.kafka_publish_failures = Counter(
            "mixer_kafka_publish_failures", "Bags a front door could not publish (the caller got an error)",
            ["topic", "reason"], registry=r,
        )
        self.kafka_inflight_bytes = Gauge(
            "mixer_kafka_inflight_bytes", "Encoded bytes a front door is publishing, not yet acknowledged", registry=r
        )
        self.kafka_consumed = Counter(
            "mixer_kafka_consumed_bags", "Bags a worker read from Kafka and dispatched", ["topic"], registry=r
        )
        self.kafka_commits = Counter(
            "mixer_kafka_commits", "Offset commits a worker made after its handlers accepted a batch", ["topic"],
            registry=r,
        )
        self.kafka_committed = Counter(
            "mixer_kafka_committed_bags", "Bags whose offsets a worker committed", ["topic"], registry=r,
        )
        self.kafka_commit_refusals = Counter(
            "mixer_kafka_commit_refused_bags",
            "Bags dispatched whose commit the group refused (partitions moved): read again by their new owner",
            ["topic"], registry=r,
        )
        self.kafka_redeliveries = Counter(
            "mixer_kafka_redeliveries", "Batches a worker read again because a handler did not accept them",
            ["topic"], registry=r,
        )
        self.kafka_dead_letters = Counter(
            "mixer_kafka_dead_letters", "Messages a worker could not decode, moved to the dead-letter topic",
            ["topic", "reason"], registry=r,
        )
        self.kafka_lag = Gauge(
            "mixer_kafka_consumer_lag", "Messages of a partition not yet committed by this worker",
            ["topic", "partition"], registry=r,
        )
        # Istio's component version gauge (mesh and mixer dashboards: "Istio Components by Version").
        Gauge("istio_build", "Istio component build info", ["component", "tag"], registry=r).labels(
            "mixer", build_tag()
        ).set(1)
        # The running config's size, under Mixer's names (its mixer dashboard's "... in Latest Config").
        self.config_sizes = {
            kind: Gauge(f"mixer_config_{kind}", f"{what} in the running config", ["configID"], registry=r)
            for kind, what in _CONFIG_SIZES.items()
        }
        self._config_id = 0
        self._dispatch_series: dict[tuple[str, str, str], DispatchSeries] = {}
        self.runtime_dispatches = Rollup(
            durations, "mixer_runtime_dispatches", "Handler calls, as Istio Mixer counted them", "counter",
            _RUNTIME_LABELS, (0, 1, 2, 3), registry=r,
        )
        r.register(durations)
        # Not exposed: the /metrics endpoints handlers serve and the scrapes they answered, so a
        # shutdown can keep them up until Prometheus has read the final values (mixer.server).
        self.scrape_endpoints = 0
        self.scrapes_served = 0
        # process_* (CPU, memory, fds) for the self-monitoring dashboard
        try:
            ProcessCollector(registry=r)
        except ValueError:  # the caller's registry has them already
            pass

    def config_applied(self, rules: int, instances: int, handlers: int, attributes: int) -> None:
        """A new config is running: its sizes, under a new ``configID`` (the previous one's series go)."""
        self._config_id += 1
        sizes = {"rule_config_count": rules, "instance_config_count": instances,
                 "handler_config_count": handlers, "attribute_count": attributes}
        for kind, gauge in self.config_sizes.items():
            gauge.clear()
            gauge.labels(str(self._config_id)).set(sizes[kind])

    def dispatch_series(self, handler: str, adapter: str, template: str) -> DispatchSeries:
        """What a (handler, adapter, template) call records, looked up once per snapshot sink.
        Two threads asking at once may each make one: both record into the same series."""
        key = (handler, adapter, template)
        series = self._dispatch_series.get(key)
        if series is None:
            series = self._dispatch_series[key] = DispatchSeries(
                self.runtime_dispatch_duration, handler, adapter, template)
        return series

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
