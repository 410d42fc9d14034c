"""Run the Prometheus server binary as a child process on loopback, and ask it PromQL."""

from __future__ import annotations

from collections.abc import Sequence

import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from mixer import processes

SCRAPE_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "prometheus.yml"


def binary() -> str | None:
    """The prometheus executable on PATH, if installed."""
    return shutil.which("prometheus")


def scrape_config(target: str | Sequence[str], interval: str = "5s") -> str:
    """The shipped deploy/prometheus.yml, pointed at ``target`` (host:port, or several) every ``interval``."""
    if SCRAPE_CONFIG.is_file():
        config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    else:  # installed without the repository's deploy/: the same shape
        config = {"scrape_configs": [{"job_name": "istio-mesh", "metrics_path": "/metrics",
                                      "static_configs": [{"targets": ["127.0.0.1:42422"]}]}]}
    config.setdefault("global", {}).update(scrape_interval=interval, evaluation_interval=interval)
    targets = [target] if isinstance(target, str) else list(target)
    config["scrape_configs"][0]["static_configs"] = [{"targets": targets}]
    return str(yaml.safe_dump(config, sort_keys=False))


class PrometheusServer:
    """One Prometheus on 127.0.0.1:``port`` with its own temporary storage, stopped by PID."""

    def __init__(self, config_text: str, port: int, workdir: Path | None = None) -> None:
        self.port = port
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mixer-prometheus-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "prometheus.yml"
        self.config_path.write_text(config_text)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = binary()
        if exe is None:
            raise FileNotFoundError("no prometheus binary on PATH")
        self._proc = processes.start(
            [exe, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle"],
            self.workdir / "prometheus.log",
        )

    def ready(self) -> bool:
        """True once Prometheus answers 200 on /-/ready."""
        answer = processes.http_get(f"{self.url}/-/ready")
        return answer is not None and answer[0] == 200

    def wait_ready(self, timeout: float = 30.0) -> None:
        processes.wait_until_ready(self.ready, timeout, self._proc,
                                   what=f"prometheus (log: {self.workdir / 'prometheus.log'})")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector; raises ValueError when Prometheus rejects the query."""
        return self._api("query", {"query": promql})["result"]  # type: ignore[no-any-return]

    def label_values(self, label: str, match: str = "") -> list[str]:
        params = {"match[]": match} if match else {}
        return [str(value) for value in self._api(f"label/{label}/values", params)]

    def targets_up(self) -> bool:
        targets = self._api("targets", {})["activeTargets"]
        return bool(targets) and all(t["health"] == "up" for t in targets)

    def _api(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                body = json.loads(reply.read())
        except urllib.error.HTTPError as err:
            body = json.loads(err.read() or b"{}")
        if body.get("status") != "success":
            raise ValueError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID, SIGKILL if it lingers; safe twice."""
        proc, self._proc = self._proc, None
        processes.stop(proc, timeout)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
