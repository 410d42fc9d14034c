"""The stdio handler's params, Mixer's shape (camelCase or snake_case), validated in full.

    logStream: STDOUT                # STDOUT | STDERR | FILE | ROTATED_FILE
    outputPath: /var/log/mixer.log   # FILE and ROTATED_FILE only (required there)
    outputAsJson: true               # only JSON lines are written
    outputLevel: INFO                # entries below it are not written: INFO | WARNING | ERROR
    metricLevel: INFO                # the level metric lines carry
    severityLevels: {Info: INFO}     # logentry severity -> level, on top of Mixer's defaults
    maxMegabytesBeforeRotation: 100  # ROTATED_FILE: rotate before the file would pass this size
    maxRotatedFiles: 1000            # ROTATED_FILE: rotated files kept (oldest removed); 0 = all
    maxDaysBeforeRotation: 30        # ROTATED_FILE: rotated files older than this removed; 0 = never
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mixer.params import Fields
from mixer.sdk import ParamsError

STREAMS = ("STDOUT", "STDERR", "FILE", "ROTATED_FILE")
LEVELS = ("INFO", "WARNING", "ERROR")

# Mixer's default severityLevels; a severity not listed (Istio's accesslog says "Info") is INFO.
DEFAULT_SEVERITY_LEVELS: Mapping[str, str] = {
    "INFORMATIONAL": "INFO", "informational": "INFO", "INFO": "INFO", "info": "INFO",
    "WARNING": "WARNING", "warning": "WARNING", "WARN": "WARNING", "warn": "WARNING",
    "ERROR": "ERROR", "error": "ERROR", "ERR": "ERROR", "err": "ERROR", "FATAL": "ERROR", "fatal": "ERROR",
}

_FIELDS = ("log_stream", "output_path", "output_as_json", "output_level", "metric_level", "severity_levels",
           "max_megabytes_before_rotation", "max_rotated_files", "max_days_before_rotation")
_ROTATION_FIELDS = ("max_megabytes_before_rotation", "max_rotated_files", "max_days_before_rotation")


@dataclass(frozen=True)
class StdioParams:
    log_stream: str = "STDOUT"
    output_path: str = ""
    output_level: str = "INFO"
    metric_level: str = "INFO"
    severity_levels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SEVERITY_LEVELS))
    max_megabytes_before_rotation: int = 100
    max_rotated_files: int = 1000
    max_days_before_rotation: int = 30


def parse(raw: Mapping[str, Any]) -> StdioParams:
    problems: list[tuple[str, str]] = []
    fields = Fields(raw, "", _FIELDS, problems, camel_paths=True)
    values = fields.values

    def choice(name: str, options: tuple[str, ...], default: str) -> str:
        value = values.get(name, default)
        if not isinstance(value, str) or value.upper() not in options:
            fields.problem(name, f"must be one of {', '.join(options)}, got {value!r}")
            return default
        return value.upper()

    def count(name: str, default: int, least: int) -> int:
        value: Any = values.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            fields.problem(name, f"must be an integer >= {least}, got {value!r}")
            return default
        return int(value)

    stream = choice("log_stream", STREAMS, "STDOUT")
    path = values.get("output_path", "")
    if not isinstance(path, str):
        fields.problem("output_path", f"must be a string, got {path!r}")
    elif stream in ("FILE", "ROTATED_FILE") and not path:
        fields.problem("output_path", f"is required when logStream is {stream}")
    if stream in ("STDOUT", "STDERR") and path:
        fields.problem("output_path", f"cannot be given when logStream is {stream}")
    if stream != "ROTATED_FILE":
        for name in _ROTATION_FIELDS:
            if name in values:
                fields.problem(name, "applies only when logStream is ROTATED_FILE")
    if values.get("output_as_json", True) is not True:
        fields.problem("output_as_json", "only JSON output is supported")
    severity_levels = dict(DEFAULT_SEVERITY_LEVELS)
    levels = values.get("severity_levels", {})
    if not isinstance(levels, Mapping):
        fields.problem("severity_levels", f"must map severities to {', '.join(LEVELS)}")
    else:
        for severity, level in levels.items():
            if not isinstance(level, str) or level.upper() not in LEVELS:
                problems.append((f"{fields.at('severity_levels')}.{severity}", f"must be one of {', '.join(LEVELS)}, got {level!r}"))
            else:
                severity_levels[str(severity)] = level.upper()
    params = StdioParams(
        log_stream=stream,
        output_path=str(path),
        output_level=choice("output_level", LEVELS, "INFO"),
        metric_level=choice("metric_level", LEVELS, "INFO"),
        severity_levels=severity_levels,
        max_megabytes_before_rotation=count("max_megabytes_before_rotation", 100, 1),
        max_rotated_files=count("max_rotated_files", 1000, 0),
        max_days_before_rotation=count("max_days_before_rotation", 30, 0),
    )
    if problems:
        raise ParamsError(problems)
    return params
