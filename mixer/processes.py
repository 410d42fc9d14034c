"""Child processes on loopback: free ports, starting, waiting until ready, stopping a process group by PID.

The one place the demo, the sidecar supervisor, ``serve --workers``, the benchmarks and the tests
start and stop processes. Every child gets its own session (process group) so that stopping it
also stops whatever it started, and stdin from /dev/null (none of them reads a terminal).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

INHERIT = "-"  # as ``log_path``: the child writes to this process's stdout and stderr


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(
    ready: Callable[[], bool],
    timeout: float = 15.0,
    proc: subprocess.Popen[bytes] | None = None,
    what: str = "process",
) -> None:
    """Poll ``ready`` until it returns True; fail early if ``proc`` died, TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process {proc.args!r} exited with {proc.returncode} before it was ready")
        if ready():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready within {timeout}s")


def port_open(port: int) -> bool:
    """True when 127.0.0.1:port accepts a connection."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def http_get(url: str, timeout: float = 1.0) -> tuple[int, bytes] | None:
    """Status and body of a GET (any status), or None when nothing answers: for readiness probes."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return int(reply.status), bytes(reply.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read() or b"")
    except OSError:
        return None


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until 127.0.0.1:port accepts connections; fail early if ``proc`` died."""
    wait_until_ready(lambda: port_open(port), timeout, proc, what=f"listener on 127.0.0.1:{port}")


def start(
    args: Sequence[str],
    log_path: str | Path | None = None,
    *,
    append: bool = False,
    stderr_path: str | Path | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in its own session; stdout and stderr to ``log_path``.

    ``log_path`` None discards the output, ``INHERIT`` ("-") shares this process's stdout and
    stderr, anything else is a file (truncated, or appended to with ``append``). ``stderr_path``
    keeps stderr apart in its own file. The parent's copies of the files are closed once the
    child has its own descriptors.
    """
    with contextlib.ExitStack() as files:
        stdout: int | IO[bytes] | None
        if log_path is None:
            stdout = subprocess.DEVNULL
        elif str(log_path) == INHERIT:
            stdout = None
        else:
            stdout = files.enter_context(open(log_path, "ab" if append else "wb"))
        stderr: int | IO[bytes] | None = subprocess.STDOUT if stdout is not None else None
        if stderr_path is not None:
            stderr = files.enter_context(open(stderr_path, "ab" if append else "wb"))
        return subprocess.Popen(
            list(args), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            cwd=cwd, env=env, start_new_session=True,
        )


def _signal_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to the child's process group unless it has exited; never blocks."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def stop_all(procs: Iterable[subprocess.Popen[bytes] | None], timeout: float = 10.0) -> None:
    """SIGTERM every child's process group by PID, give them ``timeout`` seconds together, SIGKILL the rest.

    Safe to call twice and on children that already exited (they are reaped).
    """
    children = [proc for proc in procs if proc is not None]
    for proc in children:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in children:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout)


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM the child's process group by PID, then SIGKILL if it lingers; safe twice."""
    stop_all([proc], timeout)
