"""``mixer sidecar --run``: Envoy is restarted after a crash and stopped cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.proxy.support import ROOT, Upstream, get, wait_until
from mixer.processes import free_port, start, stop, wait_for_port


def _envoy_children(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(parent)], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "envoy" in line]


def test_sidecar_run_restarts_a_crashed_envoy_and_stops_on_sigterm(tmp_path: Path) -> None:
    app = Upstream()
    port = free_port()
    # Fail-open with no mixer listening: the sidecar serves, so the app's answer proves Envoy is up.
    proc = start([sys.executable, "-m", "mixer.cli", "sidecar", "--workload", "s-v1", "--inbound",
                  f"{port}:{app.port}", "--mixer-grpc", f"127.0.0.1:{free_port()}", "--fail-open", "--run",
                  "--no-tracing", "--output", str(tmp_path / "s.yaml"), "--envoy-log", str(tmp_path / "envoy.log")],
                 log_path=str(tmp_path / "sidecar.log"), cwd=str(ROOT))
    try:
        wait_for_port(port, timeout=30, proc=proc)
        assert get(port, "/up")[0] == 200
        first = wait_until(lambda: _envoy_children(proc.pid), what="envoy child")[0]
        wait_until(lambda: _ready_lines(tmp_path / "sidecar.log") == 1, what="first ready line")
        os.kill(first, signal.SIGKILL)  # a crash
        second = wait_until(lambda: [p for p in _envoy_children(proc.pid) if p != first], what="restarted envoy")[0]
        wait_until(lambda: _serves(port), what="restarted envoy serving")
        # One ready line per LIVE Envoy: the restarted one may have another admin port.
        wait_until(lambda: _ready_lines(tmp_path / "sidecar.log") == 2, what="second ready line")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
        wait_until(lambda: not _alive(second), what="envoy stopped")
        assert "restarting" in (tmp_path / "sidecar.log").read_text()
    finally:
        stop(proc)
        app.close()


def _ready_lines(log: Path) -> int:
    return log.read_text().count("envoy ready: admin http://127.0.0.1:")


def _serves(port: int) -> bool:
    try:
        return get(port, "/again")[0] == 200
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive: it only waits to be reaped by its (gone) parent.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sidecar_run_prints_one_ready_line_and_leaves_no_temp_file(tmp_path: Path, stop_signal: int) -> None:
    app = Upstream()
    port = free_port()
    tmpdir = tmp_path / "tmp"  # the sidecar's TMPDIR: its bootstrap (no --output) must appear and go
    tmpdir.mkdir()
    out, err = tmp_path / "sidecar.out", tmp_path / "sidecar.err"
    proc = start([sys.executable, "-m", "mixer.cli", "sidecar", "--workload", "t-v1", "--inbound", f"{port}:{app.port}",
                  "--mixer-grpc", f"127.0.0.1:{free_port()}", "--fail-open", "--no-tracing", "--run"],
                 out, stderr_path=err, cwd=str(ROOT), env={**os.environ, "TMPDIR": str(tmpdir)})
    try:
        line = wait_until(lambda: out.read_text().partition("\n")[1] and out.read_text(), timeout=30, what="ready line")
        match = re.fullmatch(r"envoy ready: admin http://127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        admin = f"http://127.0.0.1:{match[1]}"
        with urllib.request.urlopen(f"{admin}/ready", timeout=10) as reply:
            assert reply.read() == b"LIVE\n"
        assert get(port, "/ready-means-serving")[0] == 200
        assert [p.name for p in tmpdir.rglob("*.yaml")] == ["t-v1.yaml"]
        envoy = _envoy_children(proc.pid)
        assert len(envoy) == 1
        os.kill(proc.pid, stop_signal)
        assert proc.wait(30) == 0
        wait_until(lambda: not _alive(envoy[0]), what="envoy stopped")
        assert list(tmpdir.iterdir()) == []
        assert out.read_text() == line  # exactly one line; Envoy's own log went to stderr
        assert "caught ENVOY_SIGTERM" in err.read_text()
    finally:
        stop(proc)
        app.close()
