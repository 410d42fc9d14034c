"""The prometheus handler: feeds the series stores per batch and serves them, with the mixer's own metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

from prometheus_client.exposition import choose_encoder

from adapters.prometheus.collector import metric_families

from adapters.prometheus.config import OVERFLOW_LABEL, Params
from adapters.prometheus.exposition import families_in, render
from adapters.prometheus.server import MetricsServer
from adapters.prometheus.store import MetricStore
from mixer.sdk import Env, Handler, InstanceSchema, MetricInstance, ParamsError
from mixer.sharedmetrics import PUBLISH_INTERVAL, MergedRegistry, SharedMetrics


class PrometheusHandler(Handler):
    def __init__(
        self,
        params: Params,
        env: Env,
        instances: Mapping[str, InstanceSchema],
        shared: SharedMetrics | None = None,
    ) -> None:
        self._env = env
        # ``mixer serve --workers N``: every worker's snapshot, summed at each scrape (mixer.sharedmetrics)
        self._shared = shared
        self._snapshots = 0
        self._publisher: asyncio.Task[None] | None = None
        self._clock = env.clock
        self._expiry = params.expiry
        self._interval = params.expiry_check_interval or 0.0
        self._next_sweep = env.clock() + self._interval if params.expiry else float("inf")
        problems: list[tuple[str, str]] = []
        self.stores: dict[str, MetricStore] = {}
        for i, info in enumerate(params.metrics):
            schema = instances.get(info.instance_name)
            if schema is None:
                # Defined but routed to this handler by no rule: expose the (empty) family anyway.
                dimensions: Sequence[str] = info.label_names
            else:
                dimensions = schema.dimension_names
                if schema.template != "metric":
                    problems.append((f"metrics[{i}].instance_name", f"{schema.name} is a {schema.template}, not a metric"))
                    continue
                missing = [label for label in info.label_names if label not in dimensions]
                if missing:
                    problems.append((
                        f"metrics[{i}].label_names",
                        f"{', '.join(missing)} not among {schema.name}'s dimensions ({', '.join(dimensions)})",
                    ))
                    continue
            self.stores[info.instance_name] = MetricStore(info, dimensions)
        unserved = sorted(set(instances) - set(self.stores))
        for name in unserved:
            problems.append(("metrics", f"instance {name} is routed here but no metric names it as instance_name"))
        if problems:
            raise ParamsError(problems)
        self._families = list(self.stores.values())
        self._warned: set[str] = set()
        self.server = MetricsServer(params.host, params.port, self.scrape)
        self._serving = False

    def take_over(self, previous: Handler) -> None:
        """Keep the series of every metric whose definition and dimensions did not change: editing
        an instance's expressions or another metric must not reset counters. The store objects are
        shared, so what the old snapshot records until the swap is kept too."""
        if not isinstance(previous, PrometheusHandler):
            return
        for name, store in self.stores.items():
            old = previous.stores.get(name)
            if old is not None and old.info == store.info and old.dimension_names == store.dimension_names:
                self.stores[name] = old
        self._families = list(self.stores.values())

    async def start(self) -> None:
        if self._shared is not None:
            self._publish()  # before serving: a scrape of any worker includes this one from now on
            self._publisher = asyncio.create_task(self._publish_every(PUBLISH_INTERVAL))
        await self.server.start()
        self._env.metrics.scrape_endpoints += 1
        self._serving = True

    async def close(self) -> None:
        if self._serving:
            self._serving = False
            self._env.metrics.scrape_endpoints -= 1
        await self.server.close()
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.cancel()
            self._publish()  # the last counts stay in the sum after this worker is gone

    def _snapshot(self) -> Callable[[], None]:
        """Take this worker's snapshot now, numbered (on the feeding thread); return what writes it
        (to run on any thread)."""
        shared, registry = self._shared, self._env.metrics.registry
        assert shared is not None
        self._snapshots += 1
        sequence, families = self._snapshots, families_in(self._families)
        return lambda: shared.publish([*metric_families(families), *registry.collect()], sequence)

    def _publish(self) -> None:
        self._snapshot()()

    async def _publish_every(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                await loop.run_in_executor(None, self._snapshot())
            except OSError:
                self._env.logger.exception("cannot write this worker's metrics snapshot")

    def handle_metric(self, instances: Sequence[MetricInstance]) -> None:
        now = self._clock()
        if now >= self._next_sweep:  # before recording, so freed room serves this batch
            self.expire(now)
        stores = self.stores
        unknown = 0
        for name, value, dimensions, _resource in instances:
            store = stores.get(name)
            if store is None:
                unknown += 1
                continue
            store.add(value, dimensions, now)
        if unknown:
            self._env.count_dropped(unknown, "unknown_instance")
        self._account()

    def _account(self) -> None:
        """Report folds and bad values as drops, once per batch rather than per instance."""
        for store in self._families:
            if store.folded:
                self._env.count_dropped(store.folded, "series_limit")
                if store.info.name not in self._warned:  # once: the counter tells the rest
                    self._warned.add(store.info.name)
                    self._env.logger.warning(
                        "%s: %s reached max_series %d; new label sets fold into its %s series",
                        self._env.handler_name, store.info.name, store.max_series, OVERFLOW_LABEL,
                    )
                store.folded = 0
            if store.rejected:
                self._env.count_dropped(store.rejected, "bad_value")
                store.rejected = 0

    def expire(self, now: float | None = None) -> int:
        """Drop series idle longer than the expiry; return how many went."""
        if self._expiry is None:
            return 0
        now = self._clock() if now is None else now
        self._next_sweep = now + self._interval
        return sum(store.expire(now - self._expiry) for store in self._families)

    def scrape(self, accept: str = "") -> tuple[Callable[[], bytes], str]:
        """Snapshot now (on the feeding thread); return the formatter to run anywhere and its content type."""
        if self._expiry is not None and self._clock() >= self._next_sweep:
            self.expire()
        self._env.metrics.scrapes_served += 1
        encoder, content_type = choose_encoder(accept)
        shared = self._shared
        if shared is not None:
            publish = self._snapshot()

            def format_merged() -> bytes:
                publish()  # this worker's part as fresh as the scrape; the others' as last written
                return encoder(MergedRegistry(shared.merged()))

            return format_merged, content_type
        families = families_in(self._families)
        is_openmetrics = content_type.startswith("application/openmetrics-text")
        registry = self._env.metrics.registry

        def format_all() -> bytes:
            # The mixer's own metrics go last: in OpenMetrics their encoding ends with the one "# EOF".
            return render(families, is_openmetrics).encode() + encoder(registry)

        return format_all, content_type
