"""The list handler's params: Mixer's ``listchecker`` params, validated in full (every problem)."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.list.entries import EntryType, parse_entries
from mixer.attributes import format_duration, parse_duration
from mixer.sdk import DEFAULT_VALID_USE_COUNT, ParamsError, unknown_fields

FIELDS = ("providerUrl", "refreshInterval", "ttl", "cachingInterval", "cachingUseCount", "overrides",
          "entryType", "blacklist")
# Mixer's defaults (GetInfo's DefaultConfig).
DEFAULT_REFRESH = dt.timedelta(seconds=60)
DEFAULT_TTL = dt.timedelta(seconds=300)
DEFAULT_CACHING = dt.timedelta(seconds=300)
MIN_REFRESH = dt.timedelta(seconds=1)
# A fetched list larger than this is refused (the last good one stays): bounded memory.
MAX_LIST_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class ListParams:
    entry_type: EntryType = EntryType.STRINGS
    blacklist: bool = False
    overrides: tuple[str, ...] = ()
    provider_url: str = ""  # "" (overrides only), http(s)://..., or file:///path
    refresh_interval: dt.timedelta = DEFAULT_REFRESH
    ttl: dt.timedelta = DEFAULT_TTL
    caching_interval: dt.timedelta = DEFAULT_CACHING
    caching_use_count: int = DEFAULT_VALID_USE_COUNT

    @property
    def provider_path(self) -> Path | None:
        """The file a ``file://`` provider names, else None."""
        parsed = urllib.parse.urlsplit(self.provider_url)
        return Path(urllib.parse.unquote(parsed.path)) if parsed.scheme == "file" else None


def parse_params(raw: Mapping[str, Any]) -> ListParams:
    problems = unknown_fields(raw, FIELDS)

    kind = EntryType.STRINGS
    if "entryType" in raw:
        try:
            kind = EntryType(raw["entryType"])
        except ValueError:
            known = ", ".join(t.value for t in EntryType)
            problems.append(("entryType", f"must be one of {known}, got {raw['entryType']!r}"))

    blacklist = raw.get("blacklist", False)
    if not isinstance(blacklist, bool):
        problems.append(("blacklist", f"must be true or false, got {blacklist!r}"))
        blacklist = False

    overrides: tuple[str, ...] = ()
    raw_overrides = raw.get("overrides") or []
    if not isinstance(raw_overrides, list):
        problems.append(("overrides", "must be a list of entries"))
    else:
        for index, entry in enumerate(raw_overrides):
            if not isinstance(entry, str):
                problems.append((f"overrides[{index}]", f"must be a string, got {entry!r}"))
            else:
                try:
                    parse_entries(kind, [entry])
                except ValueError as exc:
                    problems.append((f"overrides[{index}]", str(exc).removeprefix("entry 1: ")))
        overrides = tuple(e for e in raw_overrides if isinstance(e, str))

    url = raw.get("providerUrl", "")
    if not isinstance(url, str):
        problems.append(("providerUrl", "must be a URL string"))
        url = ""
    elif url:
        problems += _url_problems(url)

    refresh = _duration(raw, "refreshInterval", DEFAULT_REFRESH, problems)
    ttl = _duration(raw, "ttl", DEFAULT_TTL, problems)
    caching = _duration(raw, "cachingInterval", DEFAULT_CACHING, problems)
    if url:
        if refresh < MIN_REFRESH:
            problems.append(("refreshInterval", f"must be at least 1s, got {raw.get('refreshInterval')}"))
        if ttl < refresh:
            problems.append(("ttl", f"must be at least refreshInterval ({format_duration(ttl)} < "
                                   f"{format_duration(refresh)})"))

    use_count = raw.get("cachingUseCount", DEFAULT_VALID_USE_COUNT)
    if isinstance(use_count, bool) or not isinstance(use_count, int) or use_count < 0:
        problems.append(("cachingUseCount", f"must be a non-negative integer, got {use_count!r}"))
        use_count = DEFAULT_VALID_USE_COUNT
    if problems:
        raise ParamsError(problems)
    return ListParams(kind, blacklist, overrides, url, refresh, ttl, caching, use_count)


def _url_problems(url: str) -> list[tuple[str, str]]:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme in ("http", "https"):
        if not parsed.hostname:
            return [("providerUrl", f"{url!r} has no host")]
        return []
    if parsed.scheme == "file":
        if not parsed.path.startswith("/") or parsed.netloc not in ("", "localhost"):
            return [("providerUrl", f"{url!r}: a file URL needs an absolute path (file:///path/to/list)")]
        return []
    return [("providerUrl", f"{url!r}: scheme must be http, https or file")]


def _duration(raw: Mapping[str, Any], key: str, default: dt.timedelta, problems: list[tuple[str, str]]) -> dt.timedelta:
    if key not in raw:
        return default
    try:
        value = parse_duration(str(raw[key]))
    except ValueError as exc:
        problems.append((key, str(exc)))
        return default
    if value < dt.timedelta(0):
        problems.append((key, "must not be negative"))
        return default
    return value
