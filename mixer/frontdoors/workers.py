"""``mixer serve --workers N``: N re-executed serve processes sharing ports with SO_REUSEPORT.

The parent creates no gRPC object (gRPC does not survive fork): it starts each worker as a fresh
``python -m mixer.cli serve ... --workers 1 --reuse-port`` process, forwards SIGTERM/SIGINT to
them by PID, and exits when they have all exited (non-zero if any failed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence


def worker_command(argv: Sequence[str]) -> list[str]:
    """The child's command line: the parent's arguments, then overrides (argparse keeps the last)."""
    return [sys.executable, "-m", "mixer.cli", *argv, "--workers", "1", "--reuse-port"]


def run_workers(argv: Sequence[str], count: int) -> int:
    """Start ``count`` workers and wait for them; stop them all when one fails or on a signal."""
    stopping = threading.Event()
    children = [subprocess.Popen(worker_command(argv)) for _ in range(count)]

    def stop_all(*_: object) -> None:
        stopping.set()
        for child in children:
            if child.poll() is None:
                try:
                    os.kill(child.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        remaining = list(children)
        while remaining:
            for child in list(remaining):
                try:
                    code = child.wait(0.2)
                except subprocess.TimeoutExpired:
                    continue
                remaining.remove(child)
                if code != 0 and not stopping.is_set():
                    # A worker that dies on its own (bad config, port taken) takes the others down.
                    print(f"mixer: worker {child.pid} exited with {code}; stopping the others", file=sys.stderr)
                    status = code
                    stop_all()
    finally:
        stop_all()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
