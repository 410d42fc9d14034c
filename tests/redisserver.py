"""A real Redis (Debian's ``redis-server``) on a free loopback port, stopped by its PID."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mixer.processes import free_port, start, stop, wait_for_port


class RedisServer:
    """No persistence: each start is an empty Redis. ``restart`` keeps the port (a Redis outage)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (`make test` installs Debian's redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            self.workdir / "redis.log", append=True,
        )
        wait_for_port(self.port, proc=self.proc)

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None
