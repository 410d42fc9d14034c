"""The list adapter (Mixer's ``listchecker``): whitelists and blacklists for the listentry template.

Params, as Mixer's ``list`` adapter had them:

- ``entryType``: ``STRINGS`` (default), ``CASE_INSENSITIVE_STRINGS``, ``IP_ADDRESSES`` (addresses and
  CIDR ranges, IPv4 and IPv6) or ``REGEX`` (RE2 patterns, unanchored; a pattern RE2 cannot run is
  rejected when config loads).
- ``overrides``: entries written inline; consulted first.
- ``providerUrl``: where the rest of the list comes from: ``http(s)://...`` or ``file:///path``; one
  entry per line (``#`` comments and blank lines ignored; an IP list may also be Mixer's
  ``whitelist: [...]`` YAML). Fetched when the handler starts and every ``refreshInterval`` (default
  60s, at least 1s); a failed refresh is logged and counted in
  ``mixer_handler_refresh_failures_total{handler}`` and the last good list stays in use until it is
  older than ``ttl`` (default 300s, at least ``refreshInterval``). Lists over 32 MiB are refused.
- ``blacklist``: ``false`` (default): a value not listed is denied with NOT_FOUND; ``true``: a listed
  value is denied with PERMISSION_DENIED.
- ``cachingInterval`` (default 300s) and ``cachingUseCount`` (default 10000): how long and how many
  times the proxy may reuse the answer.

A value that cannot be checked (not an IP address for an IP list) answers INVALID_ARGUMENT; with no
usable provider list, a value the overrides do not decide answers UNAVAILABLE. Both deny.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.list.config import ListParams, parse_params
from adapters.list.entries import EntryType
from adapters.list.handler import ListHandler
from mixer.sdk import Adapter, Env, Handler, InstanceSchema

__all__ = ["EntryType", "ListAdapter", "ListHandler", "ListParams"]


class ListAdapter(Adapter):
    name = "list"
    templates = frozenset({"listentry"})

    def parse_params(self, raw: Mapping[str, Any]) -> ListParams:
        return parse_params(raw)

    def build(self, params: ListParams, env: Env, instances: Mapping[str, InstanceSchema]) -> Handler:
        return ListHandler(params, env)
