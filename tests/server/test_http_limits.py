"""The native HTTP API's limits, against a real `mixer serve` with small limits: content type, body
size, bags per request, invalid UTF-8, and in-flight requests and bytes shed with 429 while checks
still pass, and capacity back once the load is gone."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mixer.processes import free_port, start, stop, wait_for_port
from tests.server.test_http_api import CONFIG, Server

MAX_BODY = 200_000
MAX_INFLIGHT_BYTES = 300_000
MAX_INFLIGHT_REQUESTS = 6
MAX_BAGS = 50


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("limits")
    records = folder / "records.jsonl"
    (folder / "config.yaml").write_text(CONFIG % {"records": records})
    port = free_port()
    proc = start(
        [sys.executable, "-m", "mixer.cli", "serve", "--config", str(folder / "config.yaml"), "--port", str(port),
         "--grpc-port", str(free_port()), "--max-body-bytes", str(MAX_BODY),
         "--max-inflight-bytes", str(MAX_INFLIGHT_BYTES), "--max-inflight-requests", str(MAX_INFLIGHT_REQUESTS),
         "--max-bags-per-request", str(MAX_BAGS)],
        log_path=str(folder / "mixer.log"),
    )
    try:
        wait_for_port(port, proc=proc)
        yield Server(port, records)
    finally:
        stop(proc)
    assert proc.returncode == 0, (folder / "mixer.log").read_text()


def _metric(server: Server, name: str, labels: str) -> float:
    _, text = server.call("GET", "/metrics")
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_that_is_not_declared_json_is_415(server: Server, content_type: str) -> None:
    """What a web page can post cross-origin without a CORS preflight is refused."""
    body = json.dumps({"attributes": [{"request.path": "/from-a-web-page"}]}).encode()
    status, answer = server.call("POST", "/v1/report", body, content_type=content_type)
    assert status == 415
    assert "application/json" in answer["error"]
    assert server.call("POST", "/v1/check", b"{}", content_type=content_type)[0] == 415


def test_a_body_over_the_limit_is_413_in_json(server: Server) -> None:
    status, answer = server.call("POST", "/v1/report", b" " * (MAX_BODY + 1))
    assert status == 413
    assert answer["limit_bytes"] == MAX_BODY and str(MAX_BODY) in answer["error"]


def test_a_chunked_body_over_the_limit_is_413_in_json(server: Server) -> None:
    chunk = b" " * 50_000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
    head = (f"POST /v1/report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    reply = _raw_exchange(server, head + chunks)
    status_line, _, rest = reply.partition(b"\r\n")
    assert b" 413 " in status_line
    assert b"application/json" in rest
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["limit_bytes"] == MAX_BODY


def test_invalid_utf8_is_400_saying_where(server: Server) -> None:
    body = b'{"attributes": [{"request.path": "/ok\xff"}]}'
    where = body.index(b"\xff")
    status, answer = server.call("POST", "/v1/report", body)
    assert status == 400
    assert answer["error"] == f"body is not valid UTF-8: invalid start byte at byte {where}"


def test_more_bags_than_the_limit_is_refused_and_counted(server: Server) -> None:
    before = _metric(server, "mixer_rejected_bags_total", 'front_door="http"')
    status, answer = server.post("/v1/report", {"attributes": [{}] * (MAX_BAGS + 1)})
    assert status == 400
    assert answer["limit"] == MAX_BAGS and str(MAX_BAGS + 1) in answer["error"]
    assert _metric(server, "mixer_rejected_bags_total", 'front_door="http"') == before + MAX_BAGS + 1
    assert server.post("/v1/report", {"attributes": [{}] * MAX_BAGS})[0] == 200


def _raw_exchange(server: Server, data: bytes) -> bytes:
    port = int(server.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def _hold(server: Server, length: int) -> socket.socket:
    """A report whose body never comes: it stays admitted until the socket closes."""
    port = int(server.base.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST /v1/report HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {length}\r\n\r\n{{".encode())
    return sock


def _wait_until_shed(server: Server, path: str, payload: object) -> tuple[int, object]:
    """The held sockets are admitted as the server reads them: poll until it has."""
    deadline = time.monotonic() + 10
    while True:
        status, answer = server.post(path, payload)
        if status == 429 or time.monotonic() > deadline:
            return status, answer
        time.sleep(0.05)


def test_big_reports_past_the_inflight_bytes_are_shed_while_checks_pass(server: Server) -> None:
    big = 100_000  # above the small-request size: admitted by bytes
    held = [_hold(server, big) for _ in range(MAX_INFLIGHT_BYTES // big)]
    try:
        status, answer = _wait_until_shed(server, "/v1/report", {"attributes": [{}], "pad": " " * big})
        assert status == 429, answer
        assert "inflight_bytes" in str(answer)
        check = server.post("/v1/check", {"attributes": {"destination.workload.name": "b"}})
        assert check[0] == 200 and check[1]["status"]["code"] == 0
    finally:
        for sock in held:
            sock.close()
    assert _metric(server, "mixer_shed_requests_total", 'front_door="http",reason="inflight_bytes"') >= 1
    _wait_for_capacity(server)


def test_requests_past_the_inflight_count_are_shed_then_capacity_returns(server: Server) -> None:
    held = [_hold(server, 10) for _ in range(MAX_INFLIGHT_REQUESTS)]
    try:
        status, answer = _wait_until_shed(server, "/v1/check", {"attributes": {}})
        assert status == 429, answer
    finally:
        for sock in held:
            sock.close()
    assert _metric(server, "mixer_shed_requests_total", 'front_door="http",reason="inflight_requests"') >= 1
    _wait_for_capacity(server)


def _wait_for_capacity(server: Server) -> None:
    deadline = time.monotonic() + 10
    while server.post("/v1/report", {"attributes": [{}], "pad": " " * 100_000})[0] != 200:
        assert time.monotonic() < deadline, "capacity did not come back after the load stopped"
        time.sleep(0.05)
