"""The native HTTP API, served by a real `mixer serve` process on a free loopback port."""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mixer.processes import free_port, start, stop, wait_for_port

CONFIG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: log}
spec: {compiledAdapter: memory, params: {path: %(records)s}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: count}
spec:
  compiledTemplate: metric
  params: {value: "1", dimensions: {src: source.workload.name | "unknown", code: response.code | 0}}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: all}
spec:
  actions: [{handler: log, instances: [count]}]
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny}
spec: {compiledAdapter: denier, params: {status: {code: 7, message: no C for you}, validDuration: 2s}}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing}
spec: {compiledTemplate: checknothing}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: deny-c}
spec:
  match: destination.workload.name == "c"
  actions: [{handler: deny, instances: [nothing]}]
"""


class Server:
    def __init__(self, port: int, records: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.records = records

    def call(
        self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        headers = {"Content-Type": content_type} if body is not None else {}
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode()

    def post(self, path: str, payload: Any) -> tuple[int, Any]:
        return self.call("POST", path, json.dumps(payload).encode())

    def recorded(self) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 5
        while not self.records.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return [json.loads(line) for line in self.records.read_text().splitlines()]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    records = folder / "records.jsonl"
    (folder / "config.yaml").write_text(CONFIG % {"records": records})
    port = free_port()
    proc = start(
        [sys.executable, "-m", "mixer.cli", "serve", "--config", str(folder / "config.yaml"), "--port", str(port),
         "--grpc-port", str(free_port())],
        log_path=str(folder / "mixer.log"),
    )
    try:
        wait_for_port(port, proc=proc)
        yield Server(port, records)
    finally:
        stop(proc)
    assert proc.returncode == 0, (folder / "mixer.log").read_text()  # clean exit on SIGTERM


def test_health_and_readiness(server: Server) -> None:
    assert server.call("GET", "/healthz")[0] == 200
    assert server.call("GET", "/readyz")[0] == 200


def test_report_dispatches_every_bag(server: Server) -> None:
    status, body = server.post(
        "/v1/report",
        {"attributes": [{"source.workload.name": "a", "response.code": 200}, {"source.workload.name": "b"}]},
    )
    assert (status, body) == (200, {"accepted": 2, "instances": 2})
    dims = [r["dimensions"] for r in server.recorded()]
    assert ["a", 200] in dims and ["b", 0] in dims


def test_a_wrongly_typed_attribute_is_named_and_the_rest_of_the_batch_kept(server: Server) -> None:
    status, body = server.post(
        "/v1/report",
        {"attributes": [{"source.workload.name": "kept1"}, {"response.code": "two hundred"},
                        {"source.workload.name": "kept2"}]},
    )
    assert status == 400
    assert "response.code" in body["error"] and "INT64" in body["error"]
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1]
    sources = [r["dimensions"][0] for r in server.recorded()]
    assert "kept1" in sources and "kept2" in sources


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "bad JSON"),
        (b'{"attributes": 5}', "expected"),
        (b'{"attributes": [{"no.such.attribute": 1}]}', "no.such.attribute"),
    ],
)
def test_bad_requests_get_400_with_a_message(server: Server, payload: bytes, message: str) -> None:
    status, body = server.call("POST", "/v1/report", payload)
    assert status == 400
    assert message in body["error"]
    assert server.call("GET", "/healthz")[0] == 200  # still serving


def test_check_denies_and_allows(server: Server) -> None:
    status, denied = server.post("/v1/check", {"attributes": {"destination.workload.name": "c"}})
    assert status == 200
    assert denied["status"] == {"code": 7, "message": "no C for you"}
    assert denied["valid_duration"] == "2s"
    _, allowed = server.post(
        "/v1/check",
        {"attributes": {"destination.workload.name": "b"}, "quotas": {"rq": {"amount": 4, "best_effort": True}}},
    )
    assert allowed["status"]["code"] == 0
    assert allowed["valid_duration"] == "1m0s"
    assert allowed["valid_use_count"] == 10000
    assert allowed["quotas"]["rq"]["granted_amount"] == 4


def test_check_with_a_bad_attribute_is_400(server: Server) -> None:
    status, body = server.post("/v1/check", {"attributes": {"source.ip": "not-an-ip"}})
    assert status == 400
    assert "source.ip" in body["error"]


def test_self_metrics_count_reports_and_rejections(server: Server) -> None:
    server.post("/v1/report", {"attributes": [{}]})
    status, text = server.call("GET", "/metrics")
    assert status == 200
    assert 'mixer_reports_total{front_door="http"}' in text
    assert 'mixer_rejected_bags_total{front_door="http"}' in text


def test_invalid_config_fails_fast_with_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v9\nkind: handlr\nmetadata: {name: x}\nspec: {}\n")
    proc = start([sys.executable, "-m", "mixer.cli", "serve", "--config", str(bad), "--port", str(free_port()),
                  "--grpc-port", str(free_port())],
                 log_path=str(tmp_path / "log"))
    assert proc.wait(30) == 1
    log = (tmp_path / "log").read_text()
    assert "bad.yaml:1:13: apiVersion" in log and "bad.yaml:2:7: kind" in log


def test_config_change_is_picked_up_without_restart(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    records = tmp_path / "records.jsonl"
    config.write_text(CONFIG % {"records": records})
    port = free_port()
    proc = start([sys.executable, "-m", "mixer.cli", "serve", "--config", str(config), "--port", str(port),
                  "--grpc-port", str(free_port()), "--watch-interval", "0.2"], log_path=str(tmp_path / "log"))
    try:
        wait_for_port(port, proc=proc)
        server = Server(port, records)
        assert server.post("/v1/check", {"attributes": {"destination.workload.name": "c"}})[1]["status"]["code"] == 7
        config.write_text((CONFIG % {"records": records}).replace('== "c"', '== "d"'))
        deadline = time.monotonic() + 10
        code = 7
        while code == 7 and time.monotonic() < deadline:
            time.sleep(0.1)
            code = server.post("/v1/check", {"attributes": {"destination.workload.name": "c"}})[1]["status"]["code"]
        assert code == 0
        config.write_text("kind: [broken")  # a broken edit keeps the running config
        time.sleep(0.5)
        assert server.post("/v1/check", {"attributes": {"destination.workload.name": "d"}})[1]["status"]["code"] == 7
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
