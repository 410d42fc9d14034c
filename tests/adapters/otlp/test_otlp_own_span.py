"""A span sent on with the ids and times it arrived with (``own_span``: the door's ``SpanOrigin``)
is encoded exactly as the same instance is without them, for any span through the default tracing
rule, and through a rule whose instance states other ids and times."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from adapters.memory import MemoryHandler
from adapters.otlp.convert import own_span, span_ids, tracespan_to_span
from mixer.frontdoors.otlp_wire import ExportTraceServiceRequest
from mixer.frontdoors.span_attributes import otlp_span_bag, resource_base_bag
from mixer.registry import AdapterRegistry
from mixer.runtime import Runtime
from mixer.sdk import EncodedAttributes, Instance
from tests.frontdoors.test_otlp import TRACING, RecordingOtlp

_KEYS = st.sampled_from([
    "http.url", "http.method", "http.status_code", "guid:x-request-id", "zone", "response_size",
    "destination.workload.name", "source.workload.name", "upstream_cluster", "x-mixer-workload", "service.name",
])
_TEXTS = st.sampled_from(["", "GET", "200", "503", "12", "http://b:9080/items/3?x=1", "mixer", "b-v1", "-"])
_IDS = st.binary(min_size=8, max_size=8).filter(any)
_NANOS = st.integers(0, 2**62)


@st.composite
def _spans(draw: st.DrawFn) -> trace_pb2.Span:
    start = draw(_NANOS)
    return trace_pb2.Span(
        trace_id=draw(st.binary(min_size=16, max_size=16).filter(any)), span_id=draw(_IDS),
        parent_span_id=draw(st.one_of(st.just(b""), st.just(bytes(8)), _IDS)),
        name=draw(st.sampled_from(["", "ingress", "egress b:9080", "é" * 70])), kind=draw(st.integers(0, 5)),
        start_time_unix_nano=start, end_time_unix_nano=start + draw(st.integers(0, 10**12)),
        status=trace_pb2.Status(code=draw(st.integers(0, 2)), message=draw(st.sampled_from(["", "denied"]))),
        attributes=[common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
                    for k, v in draw(st.lists(st.tuples(_KEYS, _TEXTS), max_size=10))],
    )


def _other_ids_and_times(tmp: Path) -> Path:
    """The default tracing config, its instance stating the parent as the span id and the response
    time as the start: instances that are not the span's own."""
    text = TRACING.read_text()
    for old, new in (("spanId: span.id", "spanId: span.parent_id | span.id"),
                     ("startTime: span.start_time | request.time", "startTime: response.time"),
                     ('rewriteClientSpanId: "false"', 'rewriteClientSpanId: "true"')):
        assert old in text
        text = text.replace(old, new)
    path = tmp / "other-ids.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Runtime]]:
    registry = AdapterRegistry({"otlp": RecordingOtlp()})
    configs = [TRACING, _other_ids_and_times(tmp_path_factory.mktemp("own-span"))]
    loaded = [asyncio.run(Runtime.load([config], registry=registry)) for config in configs]
    yield loaded
    for runtime in loaded:
        asyncio.run(runtime.close())


def _instances(runtime: Runtime, span: trace_pb2.Span) -> list[Instance]:
    """``span`` through the door's reading and the runtime's rules: the tracespan instances built."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(
        common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="b")))
    resource_spans.scope_spans.add().spans.append(span)
    read = ExportTraceServiceRequest.FromString(request.SerializeToString()).resource_spans[0]
    bag = otlp_span_bag(read.scope_spans[0].spans[0], resource_base_bag(read.resource), runtime.manifest, True)
    handler = runtime.snapshot.slots["otlp.handler.istio-system"].handler
    assert isinstance(handler, MemoryHandler)
    handler.instances.clear()
    runtime.report([bag])
    return list(handler.of("tracespan"))


def _without_origin(fields: dict[str, Any]) -> dict[str, Any]:
    """The same fields with every passed-through map stripped of its span: the general path."""
    tags = {key: EncodedAttributes(value, value.wire) if type(value) is EncodedAttributes else value
            for key, value in fields["span_tags"].items()}
    return {**fields, "span_tags": tags}


@settings(max_examples=150, deadline=None)
@given(_spans())
def test_a_span_sent_with_its_own_ids_and_times_is_encoded_as_without_them(
    runtimes: list[Runtime], span: trace_pb2.Span
) -> None:
    own, other = runtimes
    for runtime, kept_its_own in ((own, True), (other, False)):
        for instance in _instances(runtime, span):
            fields = dict(instance.fields)
            origin = own_span(fields)
            # the default config keeps the span's own ids: the fast path is taken; the other config
            # states the parent's id as the span's whenever the span has a parent, and then it is not
            assert (origin is not None) == (kept_its_own or fields["span_id"] == span.span_id.hex())
            general = _without_origin(fields)
            assert own_span(general) is None
            expected = tracespan_to_span(general, span_ids(general))
            if origin is not None:
                assert (origin.trace_id, origin.span_id, origin.parent_id) == span_ids(fields)
                assert tracespan_to_span(fields, (origin.trace_id, origin.span_id, origin.parent_id), origin) == expected
            assert tracespan_to_span(fields, span_ids(fields), origin) == expected
