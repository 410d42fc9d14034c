"""``mixer serve --workers N``: N re-executed serve processes sharing ports with SO_REUSEPORT.

The parent creates no gRPC object (gRPC does not survive fork): it starts each worker as a fresh
``python -m mixer.cli serve ... --workers 1 --reuse-port --metrics-dir DIR`` process (sharing the
parent's stdout and stderr), forwards SIGHUP (reload), stops them by PID on SIGTERM/SIGINT, and
exits when they have all exited (non-zero if any failed). DIR, made by the parent and removed at
its exit, is where the workers' metrics meet, so any worker's scrape sums all of them
(``mixer.sharedmetrics``).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence

from mixer import processes

# Each worker runs in its own session (so it can be stopped as a group), out of reach of the
# terminal's signals: the parent stops them on these, so no worker outlives it, and forwards SIGHUP.
STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def worker_command(argv: Sequence[str], metrics_dir: str) -> list[str]:
    """The child's command line: the parent's arguments, then overrides (argparse keeps the last)."""
    return [sys.executable, "-m", "mixer.cli", *argv, "--workers", "1", "--reuse-port", "--metrics-dir", metrics_dir]


def run_workers(argv: Sequence[str], count: int, shutdown_grace: float = 10.0) -> int:
    """Start ``count`` workers and wait for them; stop them all when one fails or on a signal.

    A stopping worker may take ``shutdown_grace`` for requests in flight and again for a final
    scrape: only after both (and a margin) is it killed.
    """
    stopping = threading.Event()
    children: list[subprocess.Popen[bytes]] = []

    def forward_reload(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGHUP)

    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in STOPPING_SIGNALS}
    # Ignored while they are spawned, and so in them (an ignored signal stays ignored across exec)
    # until serve handles it: a SIGHUP while a worker is still loading must not kill it.
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    metrics_dir = tempfile.mkdtemp(prefix="mixer-metrics-")
    status = 0
    try:
        children.extend(processes.start(worker_command(argv, metrics_dir), processes.INHERIT) for _ in range(count))
        signal.signal(signal.SIGHUP, forward_reload)
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
        processes.stop_all(children, timeout=2 * shutdown_grace + 5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return status
