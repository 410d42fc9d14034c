"""The native Check/Report API's JSON shapes, shared by the HTTP and gRPC front doors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mixer.attributes import Bag, BagError, ValueType, bag_from_json, format_duration
from mixer.runtime import CheckResponse
from mixer.sdk import QuotaArgs


class RequestError(ValueError):
    """A request the front door must refuse as a whole (HTTP 400 / INVALID_ARGUMENT)."""


@dataclass
class ReportRequest:
    bags: list[Bag]
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"index": i, "error": "..."}


def parse_report(body: Any, manifest: Mapping[str, ValueType]) -> ReportRequest:
    """``{"attributes": [bag, ...]}``; a bad bag is rejected alone, the others are kept."""
    if not isinstance(body, dict) or not isinstance(body.get("attributes"), list):
        raise RequestError('expected {"attributes": [{...}, ...]}')
    request = ReportRequest([])
    for index, raw in enumerate(body["attributes"]):
        try:
            request.bags.append(bag_from_json(raw, manifest))
        except BagError as exc:
            request.rejected.append({"index": index, "error": str(exc)})
    return request


def parse_check(body: Any, manifest: Mapping[str, ValueType]) -> tuple[Bag, dict[str, QuotaArgs]]:
    """``{"attributes": {...}, "quotas": {"name": {"amount": N, "best_effort": bool}}}``."""
    if not isinstance(body, dict) or not isinstance(body.get("attributes", {}), dict):
        raise RequestError('expected {"attributes": {...}, "quotas": {...}}')
    unknown = set(body) - {"attributes", "quotas", "deduplication_id"}
    if unknown:
        raise RequestError(f"unknown fields: {', '.join(sorted(unknown))}")
    try:
        bag = bag_from_json(body.get("attributes", {}), manifest)
    except BagError as exc:
        raise RequestError(str(exc)) from None
    quotas: dict[str, QuotaArgs] = {}
    raw_quotas = body.get("quotas") or {}
    if not isinstance(raw_quotas, dict):
        raise RequestError("quotas must be an object of quota names")
    for name, raw in raw_quotas.items():
        if not isinstance(raw, dict):
            raise RequestError(f"quota {name!r}: expected an object with amount and best_effort")
        amount = raw.get("amount", 1)
        best_effort = raw.get("best_effort", False)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise RequestError(f"quota {name!r}: amount must be a non-negative integer")
        if not isinstance(best_effort, bool):
            raise RequestError(f"quota {name!r}: best_effort must be a boolean")
        quotas[str(name)] = QuotaArgs(amount, best_effort, str(body.get("deduplication_id", "")))
    return bag, quotas


def check_response_json(response: CheckResponse) -> dict[str, Any]:
    result = response.result
    out: dict[str, Any] = {
        "status": {"code": result.status_code, "message": result.message},
        "valid_duration": format_duration(result.valid_duration),
        "valid_use_count": result.valid_use_count,
        "quotas": {
            name: {
                "granted_amount": q.granted_amount,
                "valid_duration": format_duration(q.valid_duration),
                "status": {"code": q.status_code, "message": q.message},
            }
            for name, q in response.quotas.items()
        },
    }
    if result.http_status is not None:
        out["http_status"] = result.http_status
    if result.headers:
        out["headers"] = dict(result.headers)
    return out
