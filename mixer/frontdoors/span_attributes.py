"""Spans as attribute bags: an OTLP span (from a tracer), or a request's span derived from an access
log entry when its proxy does not trace. Pure functions; the table is ``docs/envoy-attributes.md``.

Both fill the ``span.*`` vocabulary (``mixer.attributes``), so one ``tracespan`` instance serves
either origin; ``context.proxy_tracing`` (an access log tag the sidecar generator writes when the
sidecar has a tracer) lets a rule take a request's spans from exactly one of the two.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from mixer.attributes import Bag, BagError, ValueType, value_from_text
from mixer.envoy_attributes.names import PEER_NAMESPACE_HEADER, PEER_WORKLOAD_HEADER
from mixer.frontdoors.otlp_wire import any_value_text, as_wire_span, span_attributes

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)

# OTLP's Span.SpanKind and Status.StatusCode numbers.
SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
STATUS_CODES = ("UNSET", "OK", "ERROR")
# The reporting proxy's side of the request, as an access log names it: a client (or producer) span
# is the caller's, so its proxy reports it outbound; a server (or consumer) span the callee's, inbound.
_REPORTER_KIND = {"client": "outbound", "producer": "outbound", "server": "inbound", "consumer": "inbound"}

# The HTTP facts a tracer states, span attribute -> Istio attribute (``_http_facts``). The first
# present wins: OpenTelemetry's semantic convention names, then the older ones Envoy's tracer writes.
#   http.response.status_code, http.status_code -> response.code
#   http.request.method, http.method            -> request.method
#   url.full, http.url                          -> request.host, request.scheme, request.path, request.url_path
#     (else url.path and url.query              -> request.url_path, request.path)
#   user_agent.original, user_agent             -> request.useragent
#   http.request.body.size, request_size        -> request.size
#   http.response.body.size, response_size      -> response.size
#   guid:x-request-id (Envoy's)                 -> request.id
#   response_flags (Envoy's short codes)        -> response.flags, context.proxy_error_code
_REQUEST_ID_KEY = "guid:x-request-id"  # Envoy's
_FLAGS_KEY = "response_flags"  # Envoy's short codes

_TRACE_ID = re.compile(r"[0-9a-f]{32}")  # a request id (a UUID without its dashes) that can be one
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def key_values_text(key_values: Any) -> dict[str, str]:
    """A repeated KeyValue as a STRING_MAP."""
    out: dict[str, str] = {}
    for kv in key_values:
        value = kv.value
        text = value.string_value  # most attributes are strings: one read decides
        out[kv.key] = text if text or value.WhichOneof("value") in ("string_value", None) else any_value_text(value)
    return out


def resource_base_bag(resource: Any, manifest: Mapping[str, ValueType]) -> Bag:
    """Attributes every span of one OTLP ResourceSpans shares.

    A resource attribute whose key is an attribute name is typed in by the manifest, as a span's
    are (a span's own attribute of that name wins): the generated sidecars send their identity this
    way, once per export, instead of on every span. A value that does not fit raises BagError: the
    door then refuses each span of that resource with it.
    """
    attributes = key_values_text(resource.attributes)
    bag: Bag = {"context.protocol": "otlp", "span.resource": attributes}
    _type_in(bag, attributes, manifest)
    if service := attributes.get("service.name"):
        bag["span.service"] = service
    return bag


def _time(nanos: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(0, 0, nanos // 1000)  # positional: a keyword costs half again


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None  # a malformed convention attribute stays in span.attributes only


def otlp_span_bag(
    span: Any, base: Bag, manifest: Mapping[str, ValueType], trust_peer_headers: bool = False
) -> Bag:
    """One OTLP ``Span`` as a bag on top of its resource's ``base``.

    A span without a valid trace or span id, with a parent id of the wrong length or ending before
    it starts is refused (BagError naming the attribute). Attributes whose key is an attribute name
    are copied typed by the manifest (as access log custom tags are: the sidecar generator writes
    the reporting workload's identity that way); the HTTP facts map to ``request.*``/``response.*``.
    """
    span = as_wire_span(span)
    trace_id, span_id, parent_id = span.trace_id, span.span_id, span.parent_span_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        raise BagError("span.trace_id", f"must be 16 bytes, not all zero; got {trace_id.hex() or 'none'}")
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        raise BagError("span.id", f"must be 8 bytes, not all zero; got {span_id.hex() or 'none'}")
    if parent_id and len(parent_id) != 8:
        raise BagError("span.parent_id", f"must be 8 bytes when present; got {parent_id.hex()}")
    start_ns, end_ns = span.start_time_unix_nano, span.end_time_unix_nano
    if end_ns < start_ns:
        raise BagError("span.end_time", "ends before it starts")
    bag = dict(base)
    attributes = span_attributes(span.attributes)
    _type_in(bag, attributes, manifest)
    _http_facts(attributes, bag)
    span_kind = SPAN_KINDS[span.kind] if 0 <= span.kind < len(SPAN_KINDS) else "unspecified"
    if trust_peer_headers:
        _peer(attributes, span_kind, bag)
    if reporter := _REPORTER_KIND.get(span_kind):
        bag["context.reporter.kind"] = reporter
    start, end = _time(start_ns), _time(end_ns)
    bag["span.trace_id"] = trace_id.hex()
    bag["span.id"] = span_id.hex()
    if parent_id and parent_id != _ZERO_SPAN:
        bag["span.parent_id"] = parent_id.hex()
    bag["span.name"] = span.name
    bag["span.kind"] = span_kind
    bag["span.start_time"] = start
    bag["span.end_time"] = end
    status_code = span.status.code
    bag["span.status_code"] = STATUS_CODES[status_code] if 0 <= status_code < len(STATUS_CODES) else "UNSET"
    if span.status.message:
        bag["span.status_message"] = span.status.message
    bag["span.attributes"] = attributes
    bag["request.time"] = bag["context.time"] = start
    bag["response.time"] = end
    bag["response.duration"] = end - start
    bag["context.protocol"] = "otlp"  # a span is not a request: rules counting requests do not fire twice
    return bag


def _type_in(bag: Bag, attributes: Mapping[str, str], manifest: Mapping[str, ValueType]) -> None:
    """Add the ``attributes`` whose key is an attribute name to ``bag``, typed by the manifest."""
    for key in attributes.keys() & manifest.keys():  # in C: most keys are not attribute names
        bag[key] = _typed(key, manifest[key], attributes[key])


_TYPED_LIMIT = 4096
_typed_values: dict[tuple[str, str], tuple[ValueType, Any]] = {}  # a memo of value_from_text


def _typed(key: str, kind: ValueType, text: str) -> Any:
    """``value_from_text``, remembered: a tracer repeats the same identity tags on every span (a
    label map costs a JSON parse). Keyed without the type (an enum hashes in Python), which is
    checked instead. Values are shared, as every bag's values are: never mutated."""
    known = _typed_values.get((key, text))
    if known is not None and known[0] is kind:
        return known[1]
    value = value_from_text(key, kind, text)
    if len(_typed_values) >= _TYPED_LIMIT:
        _typed_values.clear()  # bounded: a burst of unique values costs refills, not memory
    _typed_values[(key, text)] = (kind, value)
    return value


def _http_facts(attributes: Mapping[str, str], bag: Bag) -> None:
    # Each fact from the first of its names present, written out: a span pays for
    # every line here, and a helper call per fact cost a quarter of it.
    get, setdefault = attributes.get, bag.setdefault
    if (text := get("http.response.status_code")) is None:
        text = get("http.status_code")
    if (code := _int(text)) is not None:
        setdefault("response.code", code)
    if (method := get("http.request.method")) is None:
        method = get("http.method")
    if method:
        setdefault("request.method", method)
    if (url := get("url.full")) is None:
        url = get("http.url")
    if url:
        scheme, netloc, url_path, query = _url_parts(url)
        if netloc:
            setdefault("request.host", netloc)
        if scheme:
            setdefault("request.scheme", scheme)
        path = url_path + (f"?{query}" if query else "")
        if path:
            setdefault("request.path", path)
            setdefault("request.url_path", url_path)
    elif only_path := get("url.path"):
        setdefault("request.url_path", only_path)
        only_query = get("url.query")
        setdefault("request.path", f"{only_path}?{only_query}" if only_query else only_path)
    if (agent := get("user_agent.original")) is None:
        agent = get("user_agent")
    if agent:
        setdefault("request.useragent", agent)
    if request_id := get(_REQUEST_ID_KEY):
        setdefault("request.id", request_id)
    if flags := get(_FLAGS_KEY):
        setdefault("response.flags", flags)
        setdefault("context.proxy_error_code", flags)
    if (text := get("http.request.body.size")) is None:
        text = get("request_size")
    if (size := _int(text)) is not None:
        setdefault("request.size", size)
    if (text := get("http.response.body.size")) is None:
        text = get("response_size")
    if (size := _int(text)) is not None:
        setdefault("response.size", size)


@functools.lru_cache(maxsize=1024)
def _url_parts(url: str) -> tuple[str, str, str, str]:
    """(scheme, authority, path, query) of a span's URL; remembered, as a service's URLs repeat."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc, parts.path, parts.query


def _peer(attributes: Mapping[str, str], span_kind: str, bag: Bag) -> None:
    """The other side's identity from the x-mixer-* headers the sidecar generator tags spans with
    (a server span: the caller's request headers; a client span: the callee's response headers)."""
    side = "source" if span_kind == "server" else "destination" if span_kind == "client" else ""
    if not side:
        return
    # Envoy writes "-" for a header the response did not carry.
    if (name := attributes.get(PEER_WORKLOAD_HEADER)) and name != "-":
        bag.setdefault(f"{side}.workload.name", name)
        bag.setdefault(f"{side}.name", name)
    if (namespace := attributes.get(PEER_NAMESPACE_HEADER)) and namespace != "-":
        bag.setdefault(f"{side}.workload.namespace", namespace)
        bag.setdefault(f"{side}.namespace", namespace)


# -- a request's span from its access log entry ------------------------------------------------


def _span_id(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).hexdigest()


def request_span(bag: Bag, kind: str) -> Bag:
    """Add the ``span.*`` attributes of the reporting proxy's span for this request to an HTTP access
    log ``bag`` (``kind``: its reporter kind), so a proxy that does not trace still yields spans;
    returns the bag.

    Both sidecars of a hop log the same request, so both derive the same ids without talking to each
    other: the trace is the ``traceparent`` header's when the request carries one, else the request
    id (Envoy's x-request-id, a UUID, which the sidecars propagate); the client span's id is a hash
    of the request id, method, authority and path, the server span's a hash of that, and the server
    span is the client span's child. The client span's parent is the traceparent's span, if any.
    """
    request_id = bag.get("request.id")
    if not request_id or kind not in ("inbound", "outbound"):
        return bag
    parent = ""
    match = _TRACEPARENT.match(bag.get("request.headers", {}).get("traceparent", ""))
    if match is not None:
        trace_id, parent = match.group(1), match.group(2)
    else:
        trace_id = request_id.replace("-", "").lower()
        if _TRACE_ID.fullmatch(trace_id) is None:
            return bag
    client_id = _span_id(request_id, bag.get("request.method", ""), bag.get("request.host", ""),
                         bag.get("request.path", ""))
    bag["span.trace_id"] = trace_id
    if kind == "outbound":
        bag["span.kind"] = "client"
        bag["span.id"] = client_id
        if parent:
            bag["span.parent_id"] = parent
    else:
        bag["span.kind"] = "server"
        bag["span.id"] = _span_id(client_id, "server")
        bag["span.parent_id"] = client_id
    if "request.time" in bag:
        bag["span.start_time"] = bag["request.time"]
    if "response.time" in bag:
        bag["span.end_time"] = bag["response.time"]
    return bag
