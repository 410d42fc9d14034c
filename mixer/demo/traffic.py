"""The demo's load: a steady stream of calls to the frontend, some failing, one kind always denied."""

from __future__ import annotations

import collections
import itertools
import threading

from mixer.demo.app import call

# One cycle: mostly pages and items, a missing item (404), and the admin page the policy denies (403).
# reviews-v2's every-5th 503 shows up as 502s from catalog and frontend.
PATTERN = ("/", "/items/1", "/", "/items/2", "/", "/items/missing", "/", "/items/3", "/", "/admin")


class Traffic:
    """Calls ``port`` at about ``rate`` requests per second from a daemon thread until stopped."""

    def __init__(self, port: int, rate: float = 10.0) -> None:
        self.port, self.rate = port, rate
        self.sent: collections.Counter[tuple[str, int]] = collections.Counter()  # (path, status) -> calls
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        for path in itertools.cycle(PATTERN):
            if self._stop.wait(1.0 / self.rate):
                return
            self.sent[(path, call(self.port, path))] += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
