"""A tracer's attributes passed through as the bytes they arrived in (``EncodedAttributes``) become the
same OTLP span attributes as the same map spread entry by entry."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from adapters.otlp import wire
from adapters.otlp.convert import span_ids, tracespan_to_span
from mixer.frontdoors.otlp_wire import span_attributes
from mixer.sdk import EncodedAttributes
from tests.adapters.otlp.test_otlp_handler import span

_KEYS = st.sampled_from(["http.url", "zone", "source.workload.name", "request.id", "service.name", "span.kind", "x"])
_TEXTS = st.sampled_from(["", "a-v1", "http://b/hello", "0"])


def _sent(fields: Any) -> list[tuple[str, Any]]:
    _, encoded = tracespan_to_span(fields, span_ids(fields))
    out = []
    for kv in trace_pb2.Span.FromString(encoded).attributes:
        which = kv.value.WhichOneof("value")
        out.append((kv.key, getattr(kv.value, which) if which else None))
    return out


@given(st.lists(st.tuples(_KEYS, _TEXTS), max_size=8), st.dictionaries(_KEYS, _TEXTS, max_size=4))
def test_encoded_attributes_are_sent_as_their_map_would_be(tracer: list[tuple[str, str]], tags: dict[str, str]) -> None:
    encoded = span_attributes([
        common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=t)).SerializeToString() for k, t in tracer])
    assert type(encoded) is EncodedAttributes
    passed = span(**tags)
    passed.fields["span_tags"]["tracer"] = encoded
    spread = span(**tags)
    spread.fields["span_tags"]["tracer"] = dict(encoded)
    assert _sent(passed.fields) == _sent(spread.fields)


@given(st.text(max_size=70), st.text(max_size=150) | st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_an_attribute_is_written_as_the_generated_classes_read_it(key: str, value: str | int) -> None:
    # Short strings take a one-step encoding; longer ones, and integers, the general one.
    written = wire.AttributeWriter(0x4A).write(key, value)
    kind = "string_value" if isinstance(value, str) else "int_value"
    expected = trace_pb2.Span(attributes=[common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(**{kind: value}))])
    assert trace_pb2.Span.FromString(written) == expected
    assert trace_pb2.Span.FromString(written).attributes[0].value.WhichOneof("value") == kind
