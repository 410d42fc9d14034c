"""The native API's JSON bodies (until the HTTP server's own codec lands, kept identical to it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from mixer.attributes import Bag, BagError, ValueType, bag_from_json, format_duration
from mixer.sdk import QuotaArgs

MAX_REPORT_BAGS = 10_000


def _load(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not JSON: {exc}") from None


def parse_check(raw: bytes, manifest: Mapping[str, ValueType]) -> tuple[Bag, dict[str, QuotaArgs]]:
    """``{"attributes": {...}, "quotas": {"name": {"amount": 1, "best_effort": false}}}``."""
    body = _load(raw)
    if not isinstance(body, dict):
        raise ValueError("check body must be a JSON object")
    bag = bag_from_json(body.get("attributes", {}), manifest)
    quotas: dict[str, QuotaArgs] = {}
    raw_quotas = body.get("quotas", {})
    if not isinstance(raw_quotas, dict):
        raise ValueError("quotas must be an object of name -> {amount, best_effort}")
    for name, spec in raw_quotas.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("amount", 1), int):
            raise ValueError(f"quotas.{name}: expected {{\"amount\": int}}")
        quotas[name] = QuotaArgs(
            amount=spec.get("amount", 1),
            best_effort=bool(spec.get("best_effort", False)),
            deduplication_id=str(spec.get("deduplication_id", "")),
        )
    return bag, quotas


def parse_report(raw: bytes, manifest: Mapping[str, ValueType]) -> list[Bag]:
    """``{"attributes": [{...}, ...]}``."""
    body = _load(raw)
    if not isinstance(body, dict) or not isinstance(body.get("attributes"), list):
        raise ValueError('report body must be {"attributes": [bag, ...]}')
    items = body["attributes"]
    if len(items) > MAX_REPORT_BAGS:
        raise ValueError(f"at most {MAX_REPORT_BAGS} bags per report")
    bags = []
    for index, item in enumerate(items):
        try:
            bags.append(bag_from_json(item, manifest))
        except BagError as exc:
            raise BagError(exc.attribute, f"bag {index}: {exc}") from None
    return bags


def encode_check(answer: Any) -> bytes:
    result = answer.result
    return orjson.dumps(
        {
            "status": {"code": result.status_code, "message": result.message},
            "valid_duration": format_duration(result.valid_duration),
            "valid_use_count": result.valid_use_count,
            "quotas": {
                name: {"granted_amount": q.granted_amount, "valid_duration": format_duration(q.valid_duration)}
                for name, q in answer.quotas.items()
            },
        }
    )


def encode_report(count: int) -> bytes:
    return orjson.dumps({"accepted": count})
