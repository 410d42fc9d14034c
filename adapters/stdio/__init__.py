"""The stdio adapter (Mixer's): log entries and metrics as JSON lines on stdout, stderr or a file."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import orjson

from mixer.attributes import type_of_value, value_to_json
from mixer.sdk import Adapter, Env, Handler, Instance, InstanceSchema, MetricInstance, ParamsError, unknown_fields

__all__ = ["StdioAdapter", "StdioParams"]

_STREAMS = ("STDOUT", "STDERR", "FILE")


@dataclass(frozen=True)
class StdioParams:
    log_stream: str = "STDOUT"
    output_path: str = ""
    severity_levels: Mapping[str, str] | None = None


def _json_default(value: Any) -> Any:
    return value_to_json(type_of_value(value), value)


class StdioHandler(Handler):
    def __init__(self, params: StdioParams, env: Env, instances: Mapping[str, InstanceSchema]) -> None:
        self.params = params
        self.env = env
        self.dimension_names = {name: schema.dimension_names for name, schema in instances.items()}
        self._stream: IO[bytes] | None = None
        self._owned = False

    async def start(self) -> None:
        if self.params.log_stream == "FILE":
            self._stream = open(self.params.output_path, "ab")  # noqa: SIM115 - closed in close()
            self._owned = True
        else:
            self._stream = (sys.stdout if self.params.log_stream == "STDOUT" else sys.stderr).buffer

    async def close(self) -> None:
        if self._stream is not None and self._owned:
            self._stream.close()
        self._stream = None

    def _write(self, records: list[dict[str, Any]]) -> None:
        if self._stream is None:
            self.env.count_dropped(len(records), "not_started")
            return
        try:
            payload = b"".join(
                orjson.dumps(r, default=_json_default, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z)
                for r in records
            )
            self._stream.write(payload)
            self._stream.flush()
        except (OSError, TypeError, ValueError) as exc:
            self.env.count_dropped(len(records), "write_error")
            self.env.logger.warning("stdio handler %s could not write: %s", self.env.handler_name, exc)

    def handle_metric(self, instances: Sequence[MetricInstance]) -> None:
        now = dt.datetime.fromtimestamp(self.env.clock(), dt.timezone.utc)
        self._write(
            [
                {
                    "level": "info",
                    "time": now,
                    "instance": m.name,
                    "value": m.value,
                    "dimensions": dict(zip(self.dimension_names.get(m.name, ()), m.dimensions)),
                }
                for m in instances
            ]
        )

    def handle_logentry(self, instances: Sequence[Instance]) -> None:
        now = dt.datetime.fromtimestamp(self.env.clock(), dt.timezone.utc)
        levels = self.params.severity_levels or {}
        records = []
        for entry in instances:
            fields = entry.fields
            severity = str(fields.get("severity", "info"))
            record: dict[str, Any] = {
                "level": levels.get(severity, severity).lower(),
                "time": fields.get("timestamp", now),
                "instance": entry.name,
            }
            record.update(fields.get("variables", {}))
            records.append(record)
        self._write(records)


class StdioAdapter(Adapter):
    name = "stdio"
    templates = frozenset({"logentry", "metric"})

    def parse_params(self, raw: Mapping[str, Any]) -> StdioParams:
        allowed = ("logStream", "outputPath", "outputAsJson", "severityLevels", "metricLevel")
        problems = unknown_fields(raw, allowed)
        stream = str(raw.get("logStream", "STDOUT")).upper()
        if stream not in _STREAMS:
            problems.append(("logStream", f"must be one of {', '.join(_STREAMS)}, got {raw.get('logStream')!r}"))
        path = raw.get("outputPath", "")
        if stream == "FILE" and not path:
            problems.append(("outputPath", "is required when logStream is FILE"))
        if raw.get("outputAsJson", True) is not True:
            problems.append(("outputAsJson", "only JSON output is supported"))
        levels = raw.get("severityLevels")
        if levels is not None and not isinstance(levels, dict):
            problems.append(("severityLevels", "must map severities to INFO, WARNING or ERROR"))
        if problems:
            raise ParamsError(problems)
        return StdioParams(stream, str(path), levels)

    def build(self, params: StdioParams, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        return StdioHandler(params, env, instances)
