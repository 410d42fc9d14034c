"""``mixer serve --workers 2``: two processes share the gRPC and HTTP ports and stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import orjson

from tests.proxy.support import ROOT, MESH_CONFIG
from mixer.processes import free_port, start, stop, wait_for_port


def _children(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def test_workers_share_the_ports_and_stop_together(tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text(MESH_CONFIG.read_text().replace("CAPTURE_PATH", ""))
    grpc_port, http_port = free_port(), free_port()
    proc = start([sys.executable, "-m", "mixer.cli", "serve", "--config", str(config), "--port", str(http_port),
                  "--grpc-port", str(grpc_port), "--workers", "2", "--watch-interval", "0"],
                 log_path=str(tmp_path / "mixer.log"), cwd=str(ROOT))
    try:
        wait_for_port(grpc_port, timeout=30, proc=proc)
        workers = _children(proc.pid)
        assert len(workers) == 2
        wait_for_port(http_port, timeout=30, proc=proc)
        body = orjson.dumps({"attributes": {"source.workload.name": "a-v1", "destination.workload.name": "c-v1"}})
        for _ in range(6):  # fresh connections: the kernel spreads them over the workers
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                answer = orjson.loads(channel.unary_unary("/mixer.v1.Mixer/Check")(body, timeout=10))
                assert answer["status"]["code"] == 7
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
        for worker in workers:
            assert not Path(f"/proc/{worker}").exists() or Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z"
    finally:
        stop(proc)


def test_sighup_reaches_the_workers_as_a_reload(tmp_path: Path) -> None:
    # Workers run in their own sessions: signals reach them only through the parent.
    config = tmp_path / "mesh.yaml"
    config.write_text(MESH_CONFIG.read_text().replace("CAPTURE_PATH", ""))
    grpc_port = free_port()
    proc = start([sys.executable, "-m", "mixer.cli", "serve", "--config", str(config), "--port", str(free_port()),
                  "--grpc-port", str(grpc_port), "--workers", "2", "--watch-interval", "0"],
                 log_path=str(tmp_path / "mixer.log"), cwd=str(ROOT))
    try:
        wait_for_port(grpc_port, timeout=30, proc=proc)
        workers = _children(proc.pid)
        assert len(workers) == 2
        log = tmp_path / "mixer.log"
        deadline = time.monotonic() + 30
        while log.read_text().count("HTTP front doors on") < 2:  # both serving, signal handlers set
            assert time.monotonic() < deadline
            time.sleep(0.1)
        config.write_text(config.read_text().replace('== "c-v1"', '== "d-v1"'))
        os.kill(proc.pid, signal.SIGHUP)
        body = orjson.dumps({"attributes": {"source.workload.name": "a-v1", "destination.workload.name": "c-v1"}})
        deadline = time.monotonic() + 20
        allowed = 0
        while allowed < 8:  # fresh connections land on both workers: each must have reloaded
            assert time.monotonic() < deadline, "the workers did not reload on SIGHUP"
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                answer = orjson.loads(channel.unary_unary("/mixer.v1.Mixer/Check")(body, timeout=10))
            allowed = allowed + 1 if answer["status"]["code"] == 0 else 0
        assert proc.poll() is None and _children(proc.pid) == workers  # still serving, same workers
        assert log.read_text().count("SIGHUP: reloading the config") == 2
    finally:
        stop(proc)
