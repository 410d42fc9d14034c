"""What the Jaeger and collector runners share: a work folder, a config file, a child process on
loopback that is ready once every port it was given accepts connections, stopped by PID."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from mixer import processes


class ConfiguredChild:
    """A program started as ``BINARY --config FILE`` whose listeners are all on 127.0.0.1."""

    name = "program"

    def __init__(self, binary: Path | str, ports: dict[str, int], workdir: Path | None = None) -> None:
        self.binary = Path(binary)
        self.ports = ports
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"mixer-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / f"{self.name}.yaml"
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def config_text(self) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        self.config_path.write_text(self.config_text())
        self._proc = processes.start([str(self.binary), f"--config={self.config_path}"], self.log_path)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Every listener accepts (receivers start last, after exporters and extensions)."""
        deadline = time.monotonic() + timeout
        for port in self.ports.values():
            try:
                processes.wait_for_port(port, max(deadline - time.monotonic(), 0.1), self._proc)
            except (RuntimeError, TimeoutError) as err:
                raise RuntimeError(f"{self.name} not ready: {err}\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(f"  {line}" for line in text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID, SIGKILL if it lingers; safe twice."""
        proc, self._proc = self._proc, None
        processes.stop(proc, timeout)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
