"""Property tests against a real `mixer serve`: random, truncated and hostile input at every door
(native JSON over HTTP and gRPC, ext_authz, rate limit, access log stream). Every answer is a
verdict or a clean refusal: HTTP 200/400/413/415, gRPC OK/INVALID_ARGUMENT/RESOURCE_EXHAUSTED;
never 500, UNKNOWN or INTERNAL, never a hang (every call has a timeout), and the server is alive
and answering a check after each input. Each test prints how many inputs it tried.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.accesslog.v3 import als_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixer.attributes import default_manifest
from mixer.processes import free_port, start, stop, wait_for_port
from tests.frontdoors.test_envoy_attributes import REFERENCE, _lines
from tests.proxy.support import MESH_CONFIG, ROOT

TIMEOUT = 10.0  # a call not answered within this is a hang
EXAMPLES = 120
ALLOWED_GRPC = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
ALLOWED_HTTP = {200, 400, 413, 415}
NAMES = sorted(default_manifest())

# -- values ---------------------------------------------------------------------------------------

INT64_EDGES = st.sampled_from([0, -1, 2**31, 2**63 - 1, -(2**63), 2**63, 10**30, -(10**30)])
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "-", "1e999s", "99999999999999999999h", "0001-01-01T00:00:00+05:00",
                     "9999-12-31T23:59:59-05:00", "nan", "inf", "true", "::1", "999.1.1.1", "{}", "{\"a\": 1}",
                     "\ud800", "0x10", "1.5s", "2026-11-26T06:22:34Z"]),
)
# protobuf strings cannot carry lone surrogates; invalid UTF-8 reaches the gRPC doors through _hostile_bytes
PROTO_TEXT = TEXT.filter(lambda text: not any(0xD800 <= ord(c) <= 0xDFFF for c in text))
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), INT64_EDGES,
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e308, -1e308, 5e-324]), TEXT,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
# the edge values above, aimed at the attributes whose conversion they stress
TYPED_NAMES = sorted(name for name, kind in default_manifest().items()
                     if kind.value in ("DURATION", "TIMESTAMP", "INT64", "DOUBLE", "IP_ADDRESS", "BYTES", "STRING_MAP"))
BAGS = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(max_size=12)), JSON_VALUES, max_size=8),
    st.dictionaries(st.sampled_from(TYPED_NAMES), st.one_of(TEXT, JSON_SCALARS), min_size=1, max_size=3),
)


def _hostile_bytes(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, the valid message truncated, a byte of it flipped, or invalid UTF-8 spliced in."""
    return st.one_of(
        st.binary(max_size=300),
        st.integers(min_value=0, max_value=max(len(valid) - 1, 0)).map(lambda n: valid[:n]),
        st.tuples(st.integers(min_value=0, max_value=max(len(valid) - 1, 0)), st.integers(0, 255)).map(
            lambda at: valid[: at[0]] + bytes([at[1]]) + valid[at[0] + 1:]),
        st.integers(min_value=0, max_value=len(valid)).map(lambda n: valid[:n] + b"\xff\xfe\xc3" + valid[n:]),
    )


def _nested(depth: int) -> bytes:
    return b'{"attributes": ' + b"[" * depth + b"]" * depth + b"}"


NATIVE_BODIES = st.one_of(
    BAGS.map(lambda bag: json.dumps({"attributes": [bag, {"request.path": "/ok"}]}).encode()),
    BAGS.map(lambda bag: json.dumps({"attributes": bag}).encode()),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.integers(min_value=1, max_value=200_000).map(_nested),  # deep nesting
    st.integers(min_value=0, max_value=50_000).map(  # a huge map
        lambda n: json.dumps({"attributes": {"request.headers": {f"h{i}": "v" for i in range(n)}}}).encode()),
    st.integers(min_value=0, max_value=20_000).map(lambda n: json.dumps({"attributes": [{}] * n}).encode()),
    _hostile_bytes(json.dumps({"attributes": [{"request.path": "/x", "response.code": 200}]}).encode()),
)

# -- the server -----------------------------------------------------------------------------------


class Server:
    def __init__(self, http_port: int, grpc_port: int) -> None:
        self.base = f"http://127.0.0.1:{http_port}"
        self.channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        self.tried = 0
        self.answers: dict[str, set[object]] = {}  # door -> the statuses it answered

    def saw(self, door: str, status: object) -> object:
        self.answers.setdefault(door, set()).add(status)
        return status

    def post(self, path: str, body: bytes, content_type: str = "application/json") -> int:
        request = urllib.request.Request(self.base + path, body, {"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
                reply.read()
                return int(reply.status)
        except urllib.error.HTTPError as err:
            err.read()
            return int(err.code)

    def unary(self, method: str, body: bytes) -> grpc.StatusCode:
        try:
            self.channel.unary_unary(method)(body, timeout=TIMEOUT)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return, attr-defined]
        return grpc.StatusCode.OK

    def stream(self, method: str, messages: list[bytes]) -> grpc.StatusCode:
        try:
            self.channel.stream_unary(method)(iter(messages), timeout=TIMEOUT)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return, attr-defined]
        return grpc.StatusCode.OK

    def still_serving(self) -> None:
        answer = self.channel.unary_unary("/mixer.v1.Mixer/Check")(b'{"attributes": {}}', timeout=TIMEOUT)
        assert json.loads(answer)["status"]["code"] == 0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("fuzz")
    config = folder / "mesh.yaml"
    config.write_text(MESH_CONFIG.read_text().replace("CAPTURE_PATH", ""))
    http_port, grpc_port = free_port(), free_port()
    proc = start([sys.executable, "-m", "mixer.cli", "serve", "--config", str(config), "--port", str(http_port),
                  "--grpc-port", str(grpc_port), "--watch-interval", "0", "--log-level", "WARNING"],
                 log_path=str(folder / "mixer.log"), cwd=str(ROOT))
    try:
        wait_for_port(http_port, timeout=30, proc=proc)
        wait_for_port(grpc_port, timeout=30, proc=proc)
        server = Server(http_port, grpc_port)
        yield server
        server.channel.close()
        assert proc.poll() is None, "the server died"
    finally:
        stop(proc)
    assert proc.returncode == 0
    log = (Path(folder) / "mixer.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def _run(server: Server, capsys: pytest.CaptureFixture[str], door: str, prop: Callable[[], None]) -> None:
    before = server.tried
    prop()
    answers = sorted(str(status) for status in server.answers.get(door, set()))
    with capsys.disabled():
        print(f"\n{door}: {server.tried - before} inputs tried, no crash, no hang; answers: {', '.join(answers)}")
    assert server.tried - before >= EXAMPLES // 2
    assert len(answers) >= 2, "the inputs should reach both acceptance and refusal"


PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

# -- the doors ------------------------------------------------------------------------------------


def test_native_json_over_http(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    @PROPERTY
    @given(body=NATIVE_BODIES, path=st.sampled_from(["/v1/report", "/v1/check"]),
           content_type=st.sampled_from(["application/json"] * 6 + ["text/plain", ""]))
    def prop(body: bytes, path: str, content_type: str) -> None:
        server.tried += 1
        assert server.saw("native JSON over HTTP", server.post(path, body, content_type)) in ALLOWED_HTTP
        server.still_serving()

    _run(server, capsys, "native JSON over HTTP", prop)


def test_native_json_over_grpc(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    @PROPERTY
    @given(body=NATIVE_BODIES, method=st.sampled_from(["/mixer.v1.Mixer/Report", "/mixer.v1.Mixer/Check"]))
    def prop(body: bytes, method: str) -> None:
        server.tried += 1
        assert server.saw("native JSON over gRPC", server.unary(method, body)) in ALLOWED_GRPC
        server.still_serving()

    _run(server, capsys, "native JSON over gRPC", prop)


def _check_request() -> external_auth_pb2.CheckRequest:
    return json_format.Parse(json.dumps(_lines("ext_authz_check_requests.jsonl")[0]), external_auth_pb2.CheckRequest())


def _authz_inputs() -> st.SearchStrategy[bytes]:
    valid = _check_request().SerializeToString()

    def build(extensions: dict[str, str], headers: dict[str, str], seconds: int, nanos: int) -> bytes:
        request = _check_request()
        request.attributes.context_extensions.update(extensions)
        request.attributes.request.http.headers.update(headers)
        request.attributes.request.time.seconds = seconds
        request.attributes.request.time.nanos = nanos
        return request.SerializeToString()

    fields = st.builds(
        build,
        st.dictionaries(st.sampled_from(NAMES + ["mixer.quotas"]), PROTO_TEXT, max_size=6),
        st.one_of(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=5),
                  st.integers(0, 5000).map(lambda n: {f"x-h{i}": "v" for i in range(n)})),
        st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), INT64_EDGES.filter(lambda v: -(2**63) <= v < 2**63)),
        st.integers(min_value=-(2**31), max_value=2**31 - 1),
    )
    return st.one_of(fields, _hostile_bytes(valid))


def test_ext_authz(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    @PROPERTY
    @given(body=_authz_inputs())
    def prop(body: bytes) -> None:
        server.tried += 1
        assert server.saw("ext_authz", server.unary("/envoy.service.auth.v3.Authorization/Check", body)) in ALLOWED_GRPC
        server.still_serving()

    _run(server, capsys, "ext_authz", prop)


def _rls_inputs() -> st.SearchStrategy[bytes]:
    def build(domain: str, descriptors: list[list[tuple[str, str]]], hits: int) -> bytes:
        request = rls_pb2.RateLimitRequest(domain=domain, hits_addend=hits)
        for entries in descriptors:
            descriptor = request.descriptors.add()
            for key, value in entries:
                descriptor.entries.add(key=key, value=value)
        return request.SerializeToString()

    entries = st.lists(st.tuples(st.sampled_from(NAMES + ["quota"]), PROTO_TEXT), max_size=5)
    fields = st.builds(build, st.text(max_size=10), st.lists(entries, max_size=4), st.integers(0, 2**32 - 1))
    valid = json_format.Parse(json.dumps(_lines("rls_requests.jsonl")[0]), rls_pb2.RateLimitRequest()).SerializeToString()
    return st.one_of(fields, _hostile_bytes(valid))


def test_rate_limit_service(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    @PROPERTY
    @given(body=_rls_inputs())
    def prop(body: bytes) -> None:
        server.tried += 1
        status = server.unary("/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", body)
        assert server.saw("rate limit service", status) in ALLOWED_GRPC
        server.still_serving()

    _run(server, capsys, "rate limit service", prop)


def _als_messages() -> st.SearchStrategy[list[bytes]]:
    identifier = json_format.Parse((REFERENCE / "als_identifier_node.json").read_text(), als_pb2.StreamAccessLogsMessage())
    template = _lines("als_http_entries.jsonl")[0]

    def build(count: int, tcp: bool, start: int, duration: int, tags: dict[str, str], received: int) -> bytes:
        message = als_pb2.StreamAccessLogsMessage()
        message.CopyFrom(identifier)
        for i in range(count):
            if tcp:
                entry: Any = message.tcp_logs.log_entry.add()
                entry.connection_properties.received_bytes = received
                entry.common_properties.stream_id = f"c{i % 3}"
                entry.common_properties.access_log_type = i % 12
            else:
                entry = message.http_logs.log_entry.add()
                json_format.ParseDict(template, entry)
            entry.common_properties.start_time.seconds = start
            entry.common_properties.duration.seconds = duration
            entry.common_properties.custom_tags.update(tags)
        return message.SerializeToString()

    int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
    messages = st.builds(build, st.integers(0, 30), st.booleans(), int64, int64,
                         st.dictionaries(st.sampled_from(NAMES), PROTO_TEXT, max_size=3), st.integers(0, 2**64 - 1))
    return st.lists(st.one_of(messages, _hostile_bytes(identifier.SerializeToString())), min_size=1, max_size=4)


def test_access_log_stream(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    @PROPERTY
    @given(messages=_als_messages())
    def prop(messages: list[bytes]) -> None:
        server.tried += 1
        status = server.stream("/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs", messages)
        assert server.saw("access log stream", status) in ALLOWED_GRPC
        server.still_serving()

    _run(server, capsys, "access log stream", prop)
