"""The four kinds of list (Mixer's ListEntryType) and how a list's text becomes one.

A list's text has one entry per line; surrounding whitespace, empty lines and lines starting with
``#`` are ignored. An IP list may also be Mixer's YAML payload ``whitelist: [10.0.0.0/8, ...]``.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import yaml

from mixer.regex import Regex, RegexError, compile_regex

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class EntryType(enum.Enum):
    STRINGS = "STRINGS"
    CASE_INSENSITIVE_STRINGS = "CASE_INSENSITIVE_STRINGS"
    IP_ADDRESSES = "IP_ADDRESSES"
    REGEX = "REGEX"


class BadValue(ValueError):
    """The checked value cannot be compared with this kind of list (e.g. not an IP address)."""


class Entries(Protocol):
    def __contains__(self, value: object) -> bool:
        """Whether ``value`` is listed; raises BadValue when it cannot be checked."""
        ...

    def __len__(self) -> int: ...


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    raise BadValue(f"a {type(value).__name__} value cannot be checked against a list of strings")


class StringEntries:
    def __init__(self, entries: Iterable[str]) -> None:
        self._entries = frozenset(entries)

    def __contains__(self, value: object) -> bool:
        return _text(value) in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class CaseInsensitiveEntries:
    # Mixer upper-cased both sides; so does this, so the same entries match the same values.
    def __init__(self, entries: Iterable[str]) -> None:
        self._entries = frozenset(entry.upper() for entry in entries)

    def __contains__(self, value: object) -> bool:
        return _text(value).upper() in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def parse_network(text: str) -> IPNetwork:
    """An address or CIDR range; as Go's ParseCIDR, ``10.0.0.1/8`` means ``10.0.0.0/8``."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an IP address or CIDR range: {exc}") from None


def _address(value: object) -> IPAddress:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        address = value
    elif isinstance(value, str):
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            raise BadValue(f"{value} is not a valid IP address") from None
    elif isinstance(value, bytes) and len(value) in (4, 16):
        address = ipaddress.ip_address(value)
    else:
        raise BadValue(f"a {type(value).__name__} value is not an IP address")
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:10.0.0.1 is 10.0.0.1, as in Go
    return mapped if mapped is not None else address


class NetworkEntries:
    """Addresses and ranges indexed by prefix length: a check is one set lookup per distinct
    prefix length in the list (a /32 list is one lookup), not one comparison per entry."""

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        # (IP version, prefix length) -> network numbers shifted right by the host bits
        index: dict[tuple[int, int], set[int]] = {}
        for network in networks:
            host_bits = network.max_prefixlen - network.prefixlen
            index.setdefault((network.version, network.prefixlen), set()).add(
                int(network.network_address) >> host_bits)
        self._index = {key: frozenset(prefixes) for key, prefixes in index.items()}
        self._lengths = {version: tuple(sorted(length for v, length in index if v == version))
                         for version in (4, 6)}
        self._size = sum(len(prefixes) for prefixes in index.values())

    def __contains__(self, value: object) -> bool:
        address = _address(value)
        number, version, max_bits = int(address), address.version, address.max_prefixlen
        index = self._index
        return any(number >> (max_bits - length) in index[(version, length)]
                   for length in self._lengths[version])

    def __len__(self) -> int:
        return self._size


class RegexEntries:
    """RE2 patterns, each an unanchored search as Go's MatchString: linear time per pattern."""

    def __init__(self, patterns: Iterable[Regex]) -> None:
        self._patterns = tuple(patterns)

    def __contains__(self, value: object) -> bool:
        text = _text(value)
        return any(pattern.search(text) is not None for pattern in self._patterns)

    def __len__(self) -> int:
        return len(self._patterns)


def entry_lines(text: str) -> list[str]:
    """The entries of a list's text (see the module docstring)."""
    stripped = (line.strip() for line in text.splitlines())
    return [line for line in stripped if line and not line.startswith("#")]


def parse_entries(kind: EntryType, lines: Sequence[str]) -> Entries:
    """Build a list; raise ValueError naming every bad entry (by 1-based position)."""
    if kind is EntryType.STRINGS:
        return StringEntries(lines)
    if kind is EntryType.CASE_INSENSITIVE_STRINGS:
        return CaseInsensitiveEntries(lines)
    problems: list[str] = []
    if kind is EntryType.IP_ADDRESSES:
        networks: list[IPNetwork] = []
        for number, line in enumerate(lines, 1):
            try:
                networks.append(parse_network(line))
            except ValueError as exc:
                problems.append(f"entry {number}: {exc}")
        _raise_problems(problems)
        return NetworkEntries(networks)
    patterns: list[Regex] = []
    for number, line in enumerate(lines, 1):
        try:
            patterns.append(compile_regex(line))
        except RegexError as exc:
            problems.append(f"entry {number}: {exc}")
    _raise_problems(problems)
    return RegexEntries(patterns)


def _raise_problems(problems: list[str]) -> None:
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValueError(shown + more)


def parse_list_text(kind: EntryType, text: str) -> list[str]:
    """The entry lines of a fetched list; an IP list may be Mixer's ``whitelist:`` YAML payload."""
    if kind is EntryType.IP_ADDRESSES and text.lstrip().startswith("whitelist:"):
        try:
            payload: Any = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"bad whitelist YAML: {exc}") from None
        entries = payload.get("whitelist") if isinstance(payload, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ValueError("a whitelist YAML payload must be 'whitelist: [address or range, ...]'")
        return [str(entry) for entry in entries]
    return entry_lines(text)
