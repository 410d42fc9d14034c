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

from mixer.sdk import ParamsError

STREAMS = ("STDOUT", "STDERR", "FILE", "ROTATED_FILE")
LEVELS = ("INFO", "WARNING", "ERROR")

# Mixer's default severityLevels; a severity not listed (Istio's accesslog says "Info") is INFO.
DEFAULT_SEVERITY_LEVELS: Mapping[str, str] = {
    "INFORMATIONAL": "INFO", "informational": "INFO", "INFO": "INFO", "info": "INFO",
    "WARNING": "WARNING", "warning": "WARNING", "WARN": "WARNING", "warn": "WARNING",
    "ERROR": "ERROR", "error": "ERROR", "ERR": "ERROR", "err": "ERROR", "FATAL": "ERROR", "fatal": "ERROR",
}

_FIELDS = ("logStream", "outputPath", "outputAsJson", "outputLevel", "metricLevel", "severityLevels",
           "maxMegabytesBeforeRotation", "maxRotatedFiles", "maxDaysBeforeRotation")
_ROTATION_FIELDS = ("maxMegabytesBeforeRotation", "maxRotatedFiles", "maxDaysBeforeRotation")


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


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def parse(raw: Mapping[str, Any]) -> StdioParams:
    problems: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    written: dict[str, str] = {}
    for key, value in raw.items():
        name = _camel(str(key))
        if name not in _FIELDS:
            problems.append((str(key), f"unknown field (known: {', '.join(_FIELDS)})"))
        elif name in values:
            problems.append((str(key), f"given twice (as {written[name]} and {key})"))
        else:
            values[name], written[name] = value, str(key)

    def where(name: str) -> str:
        return written.get(name, name)

    def choice(name: str, options: tuple[str, ...], default: str) -> str:
        value = values.get(name, default)
        if not isinstance(value, str) or value.upper() not in options:
            problems.append((where(name), f"must be one of {', '.join(options)}, got {value!r}"))
            return default
        return value.upper()

    def count(name: str, default: int, least: int) -> int:
        value: Any = values.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            problems.append((where(name), f"must be an integer >= {least}, got {value!r}"))
            return default
        return int(value)

    stream = choice("logStream", STREAMS, "STDOUT")
    path = values.get("outputPath", "")
    if not isinstance(path, str):
        problems.append((where("outputPath"), f"must be a string, got {path!r}"))
    elif stream in ("FILE", "ROTATED_FILE") and not path:
        problems.append((where("outputPath"), f"is required when logStream is {stream}"))
    if stream in ("STDOUT", "STDERR") and path:
        problems.append((where("outputPath"), f"cannot be given when logStream is {stream}"))
    if stream != "ROTATED_FILE":
        problems += [(where(name), "applies only when logStream is ROTATED_FILE")
                     for name in _ROTATION_FIELDS if name in values]
    if values.get("outputAsJson", True) is not True:
        problems.append((where("outputAsJson"), "only JSON output is supported"))
    severity_levels = dict(DEFAULT_SEVERITY_LEVELS)
    levels = values.get("severityLevels", {})
    if not isinstance(levels, Mapping):
        problems.append((where("severityLevels"), f"must map severities to {', '.join(LEVELS)}"))
    else:
        for severity, level in levels.items():
            if not isinstance(level, str) or level.upper() not in LEVELS:
                problems.append((f"{where('severityLevels')}.{severity}", f"must be one of {', '.join(LEVELS)}, got {level!r}"))
            else:
                severity_levels[str(severity)] = level.upper()
    params = StdioParams(
        log_stream=stream,
        output_path=str(path),
        output_level=choice("outputLevel", LEVELS, "INFO"),
        metric_level=choice("metricLevel", LEVELS, "INFO"),
        severity_levels=severity_levels,
        max_megabytes_before_rotation=count("maxMegabytesBeforeRotation", 100, 1),
        max_rotated_files=count("maxRotatedFiles", 1000, 0),
        max_days_before_rotation=count("maxDaysBeforeRotation", 30, 0),
    )
    if problems:
        raise ParamsError(problems)
    return params

