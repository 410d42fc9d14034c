"""``mixer serve --workers 2``: two processes share the gRPC and HTTP ports and stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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


def test_workers_stop_when_the_parent_gets_sighup(tmp_path: Path) -> None:
    # Workers run in their own sessions, so a closing terminal reaches them only through the parent.
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
        os.kill(proc.pid, signal.SIGHUP)
        assert proc.wait(30) == 0
        for worker in workers:
            assert not Path(f"/proc/{worker}").exists() or Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z"
    finally:
        stop(proc)
