"""The Prometheus endpoint binds loopback unless `--metrics-address` says otherwise: a real
`mixer serve` on the default config, its listening socket read from /proc/net/tcp."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mixer.cli import build_parser
from mixer.config import DEFAULT_CONFIG_DIR
from mixer.processes import free_port, start, stop, wait_for_port


def listening_hosts(port: int) -> set[str]:
    """The IPv4 addresses something listens on at ``port`` (state 0A is LISTEN)."""
    hosts = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            hosts.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return hosts


def test_the_default_metrics_address_is_loopback() -> None:
    assert build_parser().parse_args(["serve"]).metrics_address == "127.0.0.1:42422"


def _serve_with_metrics_on(host: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``mixer serve`` with its metrics on ``host`` and a free port, listening. A port free on
    127.0.0.1 may still be taken on another address (0.0.0.0 needs it on all of them) or taken in the
    meantime: that start is refused with "address already in use", and is tried again on another port."""
    for _ in range(3):
        metrics_port = free_port()
        proc = start(
            [sys.executable, "-m", "mixer.cli", "serve", "--config", str(DEFAULT_CONFIG_DIR), "--port", str(free_port()),
             "--grpc-port", str(free_port()), "--metrics-address", f"{host}:{metrics_port}"],
            log_path=str(log),
        )
        try:
            wait_for_port(metrics_port, proc=proc)
            return proc, metrics_port
        except RuntimeError:
            stop(proc)
            if "address already in use" not in log.read_text():
                raise
    raise AssertionError("three free ports in a row were taken before the mixer could bind them")


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_serve_binds_the_metrics_endpoint_where_told(tmp_path: Path, host: str) -> None:
    proc, metrics_port = _serve_with_metrics_on(host, tmp_path / "log")
    try:
        assert listening_hosts(metrics_port) == {host}
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
            assert b"mixer_config_loads_total" in reply.read()
    finally:
        stop(proc)


def test_a_bad_metrics_address_is_refused_at_start(tmp_path: Path) -> None:
    proc = start([sys.executable, "-m", "mixer.cli", "serve", "--metrics-address", "nowhere"],
                 log_path=str(tmp_path / "log"))
    assert proc.wait(30) == 2
    assert "--metrics-address must be HOST:PORT" in (tmp_path / "log").read_text()
