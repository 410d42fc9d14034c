"""Envoy rate limit service (RLS) descriptors -> an attribute bag and the quota instances they name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mixer.attributes import Bag, ValueType, value_from_text
from mixer.envoy_attributes.names import DESCRIPTOR_QUOTA_KEY
from mixer.envoy_attributes.values import quota_names

# Envoy rate limit actions' default descriptor keys -> attributes.
_RLS_KEYS = {
    "remote_address": "source.ip",
    "path": "request.path",
    "method": "request.method",
    "destination_cluster": "destination.service.name",
}


def descriptor_bag(domain: str, entries: Any, manifest: Mapping[str, ValueType]) -> tuple[Bag, list[str]]:
    """One RateLimitDescriptor as a bag, plus the quota instances it names.

    Keys that are attribute names are typed by the manifest; Envoy's default action keys map as in
    ``_RLS_KEYS``; the ``quota`` key names the quota instances (comma-separated). Without it the
    domain names the quota instance.
    """
    bag: Bag = {}
    quotas: list[str] = []
    for entry in entries:
        key, value = entry.key, entry.value
        if key == DESCRIPTOR_QUOTA_KEY:
            quotas.extend(quota_names(value))
            continue
        name = key if key in manifest else _RLS_KEYS.get(key)
        if name is not None and name in manifest:
            bag[name] = value_from_text(name, manifest[name], value)
    if not quotas and domain:
        quotas = [domain]
    return bag, quotas
