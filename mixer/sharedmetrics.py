"""Metrics of ``mixer serve --workers N`` summed over the workers, whichever worker is scraped.

Each worker writes a snapshot of what it would expose to a file of its own in a directory the
parent made (once a second, and at every scrape); a scrape merges the latest snapshot of every
worker (as prometheus_client's multiprocess mode does). Every worker's files only ever get newer,
so successive scrapes never go backwards: Prometheus sees no false counter resets. A worker that
exited keeps its last snapshot in the sum, so its counts are not lost either.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.core import Metric
from prometheus_client.samples import Sample

PUBLISH_INTERVAL = 1.0  # seconds between a worker's snapshots when nobody scrapes it

# Gauges that are not amounts: summing them over workers would mean nothing.
_MIN_GAUGES = frozenset({"process_start_time_seconds"})
_MAX_GAUGES = frozenset({"process_max_fds"})


class SharedMetrics:
    """One worker's view of the shared directory for one endpoint (``key``: a handler's name, "self")."""

    def __init__(self, directory: str | Path, key: str, worker: str | None = None) -> None:
        self.directory = Path(directory)
        self.key = key
        self.path = self.directory / f"{key}.{worker or os.getpid()}.json"
        self._lock = threading.Lock()
        self._written = -1  # sequence number of the snapshot in our file

    def publish(self, metrics: Iterable[Metric], sequence: int) -> None:
        """Write this worker's snapshot ``sequence`` unless a newer one is there already.

        Snapshots are numbered when taken, on the event loop; writing may happen on any thread.
        """
        body = orjson.dumps([_encode(metric) for metric in metrics])
        with self._lock:
            if sequence <= self._written:
                return
            temporary = self.path.with_suffix(f".tmp{threading.get_ident()}")
            temporary.write_bytes(body)
            os.replace(temporary, self.path)  # readers see the old file or the new, never half of one
            self._written = sequence

    def merged(self) -> list[Metric]:
        """Every worker's latest snapshot for this key, summed (counters, histograms, gauges of amounts)."""
        families: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for path in sorted(self.directory.glob(f"{self.key}.*.json")):
            try:
                snapshot = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue  # a worker's file vanished with its directory, or never finished: skip it
            for raw in snapshot:
                name = raw["name"]
                if name not in families:
                    families[name] = Metric(name, raw["documentation"], raw["type"], raw["unit"])
                    values[name] = {}
                combine = _combiner(name, raw["type"])
                family_values = values[name]
                for sample_name, labels, value in raw["samples"]:
                    key = (sample_name, tuple(sorted(labels.items())))
                    previous = family_values.get(key)
                    family_values[key] = value if previous is None else combine(sample_name, previous, value)
        for name, family in families.items():
            family.samples = [Sample(sample, dict(labels), value) for (sample, labels), value in values[name].items()]
        return list(families.values())


class MergedRegistry:
    """What an exposition function scrapes: ``collect`` yields the merged families."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return iter(self._metrics)


def _encode(metric: Metric) -> dict[str, Any]:
    return {
        "name": metric.name,
        "documentation": metric.documentation,
        "type": metric.type,
        "unit": metric.unit,
        "samples": [[s.name, s.labels, s.value] for s in metric.samples],
    }


def _combiner(family: str, kind: str) -> Any:
    if kind == "gauge" and family in _MIN_GAUGES:
        return lambda _name, a, b: min(a, b)
    if kind == "gauge" and family in _MAX_GAUGES:
        return lambda _name, a, b: max(a, b)

    def add(sample: str, a: float, b: float) -> float:
        # a counter's _created is when it started: the earliest worker's
        return min(a, b) if sample.endswith("_created") else a + b

    return add
