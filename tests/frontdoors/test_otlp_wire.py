"""The door's reading of span attributes from their bytes agrees with opentelemetry-proto's, for any
attribute; a malformed one refuses its span alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from mixer.attributes import BagError
from mixer.frontdoors.otlp_wire import ExportTraceServiceRequest, any_value_text, attribute, span_attributes

_SCALARS = st.one_of(
    st.builds(lambda s: common_pb2.AnyValue(string_value=s), st.text(max_size=300)),
    st.builds(lambda b: common_pb2.AnyValue(bool_value=b), st.booleans()),
    st.builds(lambda i: common_pb2.AnyValue(int_value=i), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda d: common_pb2.AnyValue(double_value=d), st.floats(allow_nan=False)),
    st.builds(lambda b: common_pb2.AnyValue(bytes_value=b), st.binary(max_size=40)),
    st.just(common_pb2.AnyValue()),
)
_VALUES = st.one_of(
    _SCALARS,
    st.builds(lambda vs: common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=vs)), st.lists(_SCALARS, max_size=3)),
)
_KEYS = st.one_of(st.sampled_from(["http.url", "zone", "node_id", ""]), st.text(max_size=200))


@given(st.lists(st.tuples(_KEYS, _VALUES), max_size=8))
def test_attributes_read_from_bytes_match_the_generated_classes(pairs: list[tuple[str, common_pb2.AnyValue]]) -> None:
    span = trace_pb2.Span(attributes=[common_pb2.KeyValue(key=k, value=v) for k, v in pairs])
    expected: dict[str, str] = {}
    for kv in span.attributes:
        which = kv.value.WhichOneof("value")
        expected[kv.key] = kv.value.string_value if which in ("string_value", None) else any_value_text(kv.value)
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(span)
    read = ExportTraceServiceRequest.FromString(request.SerializeToString()).resource_spans[0].scope_spans[0].spans[0]
    attributes = span_attributes(read.attributes)
    assert dict(attributes) == expected
    # what goes on to an adapter: each non-empty entry as a Span.attributes field holding its text
    assert list(attributes.wire) == [key for key, text in expected.items() if text]
    sent = trace_pb2.Span.FromString(b"".join(attributes.wire.values()))
    assert [(kv.key, kv.value.string_value) for kv in sent.attributes] == [(k, t) for k, t in expected.items() if t]


def test_a_repeated_key_keeps_the_last_value_and_drops_an_emptied_entry() -> None:
    span = trace_pb2.Span(attributes=[
        common_pb2.KeyValue(key="a", value=common_pb2.AnyValue(string_value="1")),
        common_pb2.KeyValue(key="b", value=common_pb2.AnyValue(string_value="2")),
        common_pb2.KeyValue(key="a", value=common_pb2.AnyValue(string_value="")),
        common_pb2.KeyValue(key="b", value=common_pb2.AnyValue(string_value="3")),
    ])
    attributes = span_attributes([kv.SerializeToString() for kv in span.attributes])
    assert attributes == {"a": "", "b": "3"}
    assert list(attributes.wire) == ["b"]


@pytest.mark.parametrize("encoded", [b"\x0a\x05ab", b"\x0a\x02\xff\xfe\x12\x02\x0a\x00", b"\x12\x03\x0a\x01\xc3"])
def test_a_malformed_attribute_is_a_bag_error_naming_span_attributes(encoded: bytes) -> None:
    with pytest.raises(BagError, match="span.attributes"):
        attribute(encoded)
