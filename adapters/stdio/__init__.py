"""The stdio adapter (Mixer's): log entries and metrics as JSON lines on stdout, stderr, a file, or a
file rotated by size with a retention count (params: ``adapters/stdio/config.py``).

A line is ``{"level", "time", "instance", <variables or "value"/"dimensions">}``, as Mixer's zap
encoder wrote it (level lower-case, time in UTC). Lines are rendered on the event loop and written by a
thread (``writer.py``), so a slow reader of stdout never stalls the loop: past ``BUFFER_BYTES`` waiting,
new lines are dropped and counted (``buffer_full``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

import orjson

from adapters.stdio.config import LEVELS, StdioParams, parse
from adapters.stdio.rotating import RotatingFile
from adapters.stdio.writer import BUFFER_FULL, BackgroundWriter
from mixer.attributes import format_duration, type_of_value, value_to_json
from mixer.sdk import Adapter, Env, Handler, Instance, InstanceSchema, MetricInstance

__all__ = ["BUFFER_BYTES", "BackgroundWriter", "RotatingFile", "StdioAdapter", "StdioHandler", "StdioParams"]

_RANK = {level: rank for rank, level in enumerate(LEVELS)}
_MEGABYTE = 1024 * 1024
_MAX_ORDERS = 256
# Lines waiting for a slow stream, in bytes (~16k access log lines): bounds memory; beyond it lines drop.
BUFFER_BYTES = 16 * _MEGABYTE
_CLOSE_TIMEOUT = 5.0  # seconds close() waits for queued lines to be written


# What orjson cannot write by itself, by exact type: the access log's IPs and durations, per entry.
_TO_JSON: dict[type, Callable[[Any], Any]] = {
    ipaddress.IPv4Address: str,
    ipaddress.IPv6Address: str,
    dt.timedelta: format_duration,
}


def _json_default(value: Any) -> Any:
    convert = _TO_JSON.get(type(value))
    if convert is not None:
        return convert(value)
    return value_to_json(type_of_value(value), value)


_SORTED_LINE = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z
_RESERVED = frozenset({"level", "time", "instance"})  # a log line's leading keys


def _line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, default=_json_default, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z)


class StdioHandler(Handler):
    def __init__(self, params: StdioParams, env: Env, instances: Mapping[str, InstanceSchema],
                 buffer_bytes: int = BUFFER_BYTES) -> None:
        self.params = params
        self.env = env
        self._buffer_bytes = buffer_bytes
        self._writer: BackgroundWriter | None = None
        self._warned_full = False
        self.dimension_names = {name: schema.dimension_names for name, schema in instances.items()}
        self._min_rank = _RANK[params.output_level]
        self._stream: IO[bytes] | None = None
        self._rotating: RotatingFile | None = None
        self._owned = False
        self._orders: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._parts: dict[tuple[str, str], tuple[bytes, bytes]] = {}

    async def start(self) -> None:
        params = self.params
        if params.log_stream == "ROTATED_FILE":
            self._rotating = RotatingFile(params.output_path, params.max_megabytes_before_rotation * _MEGABYTE,
                                          params.max_rotated_files, params.max_days_before_rotation, self.env.clock)
            self._rotating.open()
        elif params.log_stream == "FILE":
            self._stream = open(params.output_path, "ab")  # noqa: SIM115 - closed in close()
            self._owned = True
        else:
            self._stream = (sys.stdout if params.log_stream == "STDOUT" else sys.stderr).buffer
        self._writer = BackgroundWriter(self._write_out, self._buffer_bytes, self._dropped,
                                        name=f"stdio-{self.env.handler_name}")

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.to_thread(writer.close, _CLOSE_TIMEOUT)
        if self._stream is not None and self._owned:
            self._stream.close()
        if self._rotating is not None:
            self._rotating.close()
        self._stream = self._rotating = None

    def _write(self, records: list[dict[str, Any]]) -> None:
        if self._writer is None:
            self.env.count_dropped(len(records), "not_started")
            return
        try:
            lines = [_line(record) for record in records]
        except (TypeError, ValueError) as exc:
            self._dropped(len(records), "write_error", exc)
            return
        self._offer(lines)

    def _offer(self, lines: list[bytes]) -> None:
        writer = self._writer
        if writer is None:
            self.env.count_dropped(len(lines), "not_started")
            return
        if not writer.offer(lines):
            self.env.count_dropped(len(lines), BUFFER_FULL)
            if not self._warned_full:  # once: the counter tells the rest
                self._warned_full = True
                self.env.logger.warning("stdio handler %s: output is not keeping up; %d bytes of lines "
                                        "wait, new lines are dropped", self.env.handler_name, writer.pending_bytes)

    def _write_out(self, lines: Sequence[bytes]) -> None:
        """On the writer's thread: blocking is fine here."""
        if self._rotating is not None:
            self._rotating.write_lines(lines)
        elif self._stream is not None:
            self._stream.write(b"".join(lines))
            self._stream.flush()

    def _dropped(self, count: int, reason: str, error: Exception | None) -> None:
        self.env.count_dropped(count, reason)
        if error is not None:
            self.env.logger.warning("stdio handler %s could not write: %s", self.env.handler_name, error)

    def _sorted_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """``sorted(names)``, remembered: an instance's variables come in the same order every time."""
        order = self._orders.get(names)
        if order is None:
            if len(self._orders) >= _MAX_ORDERS:  # variable names come from config: a handful
                self._orders.clear()
            order = self._orders[names] = tuple(sorted(names))
        return order

    def handle_metric(self, instances: Sequence[MetricInstance]) -> None:
        if _RANK[self.params.metric_level] < self._min_rank:
            return  # below outputLevel: not written, by configuration
        now = dt.datetime.fromtimestamp(self.env.clock(), dt.timezone.utc)
        level = self.params.metric_level.lower()
        self._write([
            {
                "level": level,
                "time": now,
                "instance": m.name,
                "value": m.value,
                "dimensions": dict(zip(self.dimension_names.get(m.name, ()), m.dimensions)),
            }
            for m in instances
        ])

    def handle_logentry(self, instances: Sequence[Instance]) -> None:
        """One line per entry: ``{"level", "time", "instance", <variables sorted by name>}``, as Mixer
        wrote it. The line is joined from parts, not from a record dict: the part up to the time and
        the one after it are prepared once per (level, instance), and the variables are one orjson
        call that sorts them (``OPT_SORT_KEYS``, the order ``sorted`` gives; a map's own keys come
        sorted too)."""
        now = dt.datetime.fromtimestamp(self.env.clock(), dt.timezone.utc)
        lines: list[bytes] = []
        try:
            for entry in instances:
                fields = entry.fields
                level = self._level(fields)
                if _RANK[level] < self._min_rank:
                    continue  # below outputLevel: not written, by configuration
                variables = fields.get("variables") or {}
                if type(variables) is not dict:
                    variables = dict(variables)
                time = fields.get("timestamp", now)
                if variables.keys().isdisjoint(_RESERVED):  # over the 3 reserved names, not the variables
                    head, tail = self._line_parts(level, entry.name)
                    body = orjson.dumps(variables, default=_json_default, option=_SORTED_LINE) if variables else b"{}\n"
                    lines.append(b"".join((head, orjson.dumps(time, default=_json_default, option=orjson.OPT_UTC_Z),
                                           tail, b"," if variables else b"", body[1:])))
                else:  # a variable named like a leading key takes its place, as in Mixer's record
                    record: dict[str, Any] = {"level": level.lower(), "time": time, "instance": entry.name}
                    record.update((name, variables[name]) for name in self._sorted_names(tuple(variables)))
                    lines.append(_line(record))
        except (TypeError, ValueError) as exc:
            # the whole batch, as when its records were rendered together
            written = sum(_RANK[self._level(entry.fields)] >= self._min_rank for entry in instances)
            self._dropped(written, "write_error", exc)
            return
        if lines:
            self._offer(lines)

    def _level(self, fields: Mapping[str, Any]) -> str:
        levels = self.params.severity_levels
        severity = str(fields.get("severity", "INFO"))
        # Mixer's exact lookup, then case-blind ("Warning" is a warning); anything else is INFO
        return levels.get(severity) or levels.get(severity.upper(), "INFO")

    def _line_parts(self, level: str, instance: str) -> tuple[bytes, bytes]:
        """``{"level":...,"time":`` and ``,"instance":...`` for one level and instance, remembered."""
        parts = self._parts.get((level, instance))
        if parts is None:
            if len(self._parts) >= _MAX_ORDERS:  # instance names come from config: a handful
                self._parts.clear()
            head = orjson.dumps({"level": level.lower()})[:-1] + b',"time":'
            parts = self._parts[(level, instance)] = (head, b',"instance":' + orjson.dumps(instance))
        return parts


class StdioAdapter(Adapter):
    name = "stdio"
    templates = frozenset({"logentry", "metric"})

    def parse_params(self, raw: Mapping[str, Any]) -> StdioParams:
        return parse(raw)

    def build(self, params: StdioParams, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        return StdioHandler(params, env, instances)
