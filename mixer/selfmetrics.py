"""The collector's own metrics, in a registry the runtime owns (never the module-level default)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import generate_latest

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class SelfMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.reports = Counter("mixer_reports", "Attribute bags received for report", ["front_door"], registry=r)
        self.checks = Counter("mixer_checks", "Check requests answered", ["front_door", "result"], registry=r)
        self.dispatches = Counter(
            "mixer_dispatches", "Handler calls", ["handler", "adapter", "template"], registry=r
        )
        self.dispatch_errors = Counter(
            "mixer_dispatch_errors", "Handler calls that raised", ["handler", "adapter"], registry=r
        )
        self.dispatch_duration = Histogram(
            "mixer_dispatch_duration_seconds",
            "Time spent in one handler call",
            ["handler", "adapter"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
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
        self.config_loads = Counter("mixer_config_loads", "Config load attempts", ["result"], registry=r)
        # Not exposed: the /metrics endpoints handlers serve and the scrapes they answered, so a
        # shutdown can keep them up until Prometheus has read the final values (mixer.server).
        self.scrape_endpoints = 0
        self.scrapes_served = 0
        # process_* (CPU, memory, fds) for the self-monitoring dashboard
        try:
            ProcessCollector(registry=r)
        except ValueError:  # the caller's registry has them already
            pass

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
