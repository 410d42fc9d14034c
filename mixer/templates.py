"""The instance templates (Mixer's): which fields an instance has and what type each must be."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

from mixer.attributes import ValueType


class Variety(enum.Enum):
    REPORT = "report"
    CHECK = "check"
    QUOTA = "quota"
    ATTRIBUTES = "attributes"  # attribute generation (Mixer's APA): recognised in config, not dispatched


class FieldKind(enum.Enum):
    EXPRESSION = "expression"  # one expression
    EXPRESSION_MAP = "map"  # name -> expression (dimensions, variables, tags, properties)


@dataclass(frozen=True, slots=True)
class Field:
    kind: FieldKind
    type: ValueType  # ValueType.ANY accepts any expression type


Fields = dict[str, Union[Field, "Fields"]]  # nested groups, e.g. authorization's subject/action


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    variety: Variety
    fields: Fields


def _expr(kind: ValueType = ValueType.ANY) -> Field:
    return Field(FieldKind.EXPRESSION, kind)


def _map(kind: ValueType = ValueType.ANY) -> Field:
    return Field(FieldKind.EXPRESSION_MAP, kind)


_S, _T = ValueType.STRING, ValueType.TIMESTAMP
_MONITORED_RESOURCE: Fields = {"monitored_resource_type": _expr(_S), "monitored_resource_dimensions": _map()}

TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "metric",
            Variety.REPORT,
            {"value": _expr(), "dimensions": _map(), **_MONITORED_RESOURCE},
        ),
        Template(
            "logentry",
            Variety.REPORT,
            {"variables": _map(), "severity": _expr(_S), "timestamp": _expr(_T), "timestamp_format": _expr(_S),
             **_MONITORED_RESOURCE},
        ),
        Template(
            "tracespan",
            Variety.REPORT,
            {
                "trace_id": _expr(_S),
                "span_id": _expr(_S),
                "parent_span_id": _expr(_S),
                "span_name": _expr(_S),
                "start_time": _expr(_T),
                "end_time": _expr(_T),
                "span_tags": _map(),
                "http_status_code": _expr(ValueType.INT64),
                "client_span": _expr(ValueType.BOOL),
                "rewrite_client_span_id": _expr(ValueType.BOOL),
                "source_name": _expr(_S),
                "source_ip": _expr(ValueType.IP_ADDRESS),
                "destination_name": _expr(_S),
                "destination_ip": _expr(ValueType.IP_ADDRESS),
                "request_size": _expr(ValueType.INT64),
                "request_total_size": _expr(ValueType.INT64),
                "response_size": _expr(ValueType.INT64),
                "response_total_size": _expr(ValueType.INT64),
                "api_protocol": _expr(_S),
            },
        ),
        Template("reportnothing", Variety.REPORT, {}),
        Template(
            "authorization",
            Variety.CHECK,
            {
                "subject": {"user": _expr(_S), "groups": _expr(_S), "properties": _map()},
                "action": {
                    "namespace": _expr(_S),
                    "service": _expr(_S),
                    "method": _expr(_S),
                    "path": _expr(_S),
                    "properties": _map(),
                },
            },
        ),
        Template("listentry", Variety.CHECK, {"value": _expr()}),
        Template("checknothing", Variety.CHECK, {}),
        Template("quota", Variety.QUOTA, {"dimensions": _map()}),
        # Mixer's Kubernetes attribute generator: pod IP/UID in, workload identity out (see
        # mixer/config/_attrgen.py for why it is checked but not run).
        Template(
            "kubernetes",
            Variety.ATTRIBUTES,
            {
                "source_uid": _expr(_S),
                "source_ip": _expr(ValueType.IP_ADDRESS),
                "destination_uid": _expr(_S),
                "destination_ip": _expr(ValueType.IP_ADDRESS),
                "destination_port": _expr(ValueType.INT64),
            },
        ),
    )
}

# Mixer's YAML spells tracespan fields in camelCase (traceId, spanTags); accept both spellings.
CAMEL_ALIASES: dict[str, str] = {
    "traceId": "trace_id",
    "spanId": "span_id",
    "parentSpanId": "parent_span_id",
    "spanName": "span_name",
    "startTime": "start_time",
    "endTime": "end_time",
    "spanTags": "span_tags",
    "httpStatusCode": "http_status_code",
    "clientSpan": "client_span",
    "rewriteClientSpanId": "rewrite_client_span_id",
    "sourceName": "source_name",
    "sourceIp": "source_ip",
    "destinationName": "destination_name",
    "destinationIp": "destination_ip",
    "requestSize": "request_size",
    "requestTotalSize": "request_total_size",
    "responseSize": "response_size",
    "responseTotalSize": "response_total_size",
    "apiProtocol": "api_protocol",
    "monitoredResourceType": "monitored_resource_type",
    "monitoredResourceDimensions": "monitored_resource_dimensions",
    "timestampFormat": "timestamp_format",
}
