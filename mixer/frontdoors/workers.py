"""``mixer serve --workers N``: N re-executed serve processes sharing ports with SO_REUSEPORT.

The parent creates no gRPC object (gRPC does not survive fork): it starts each worker as a fresh
``python -m mixer.cli serve ... --workers 1 --reuse-port`` process (sharing the parent's stdout
and stderr), stops them by PID on SIGTERM/SIGINT/SIGHUP, and exits when they have all exited
(non-zero if any failed).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

from mixer import processes

# Each worker runs in its own session (so it can be stopped as a group), out of reach of the
# terminal's signals: the parent forwards them, SIGHUP included, so no worker outlives it.
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def worker_command(argv: Sequence[str]) -> list[str]:
    """The child's command line: the parent's arguments, then overrides (argparse keeps the last)."""
    return [sys.executable, "-m", "mixer.cli", *argv, "--workers", "1", "--reuse-port"]


def run_workers(argv: Sequence[str], count: int) -> int:
    """Start ``count`` workers and wait for them; stop them all when one fails or on a signal."""
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in FORWARDED_SIGNALS}
    children: list[subprocess.Popen[bytes]] = []
    status = 0
    try:
        children = [processes.start(worker_command(argv), processes.INHERIT) for _ in range(count)]
        remaining = list(children)
        while remaining and not stopping.is_set():
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
                    stopping.set()
                    break
    finally:
        processes.stop_all(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
