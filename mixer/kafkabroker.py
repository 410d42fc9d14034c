"""Apache Kafka's broker for tests, the demo and benchmarks: fetched with Maven once, run as a single KRaft node.

The broker and its dependencies come from Maven Central (``org.apache.kafka:kafka_2.13``) through a
throwaway ``pom.xml`` and ``mvn dependency:copy-dependencies`` into
``${XDG_CACHE_HOME:-~/.cache}/mixer/kafka-<version>/libs/``. The fetch runs in a scratch folder under
a file lock and is renamed into place only when it succeeded, so a half fetch is never used.
``KafkaBroker`` formats a fresh storage folder and starts ``kafka.Kafka`` with Java on free loopback
ports; it is stopped by PID.

    python -m mixer.kafkabroker          # fetches when missing, prints the libs folder
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self, TextIO

from mixer import processes

KAFKA_VERSION = "4.4.0"
# The broker logs through slf4j 1.x; without this binding it logs nothing at all.
LOG4J_VERSION = "2.25.5"
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.mixer</groupId>
  <artifactId>kafka-broker-fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""
_LOG4J = """rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = INFO
"""


class FetchError(RuntimeError):
    """Fetching the broker failed; the message names the command and the end of its output."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mixer"


def _folder() -> Path:
    return cache_root() / f"kafka-{KAFKA_VERSION}"


def cached() -> Path | None:
    """The broker's ``libs`` folder when it has been fetched, without fetching."""
    libs = _folder() / "libs"
    return libs if (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file() else None


def ensure(log: TextIO | None = sys.stderr) -> Path:
    """The broker's ``libs`` folder, fetched with Maven first when missing (a minute or two, cold)."""
    found = cached()
    if found:
        return found
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise FetchError("the Kafka broker needs Java 17+ and Maven (mvn) on PATH")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = _folder()
    with _locked(root / f".{final.name}.lock"):
        found = cached()  # another process fetched it while this one waited
        if found:
            return found
        if final.exists():  # a folder without the broker jar: not ours to trust
            shutil.rmtree(final)
        scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.fetch-", dir=root))
        try:
            if log is not None:
                print(f"fetching Apache Kafka {KAFKA_VERSION} with Maven into {final} ...", file=log, flush=True)
            (scratch / "pom.xml").write_text(_POM.format(kafka=KAFKA_VERSION, log4j=LOG4J_VERSION))
            command = ["mvn", "-q", "-B", "dependency:copy-dependencies", "-DoutputDirectory=libs",
                       "-DincludeScope=runtime"]
            result = subprocess.run(command, cwd=scratch, stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if result.returncode != 0 or not (scratch / "libs" / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
                tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
                raise FetchError(f"{' '.join(command)} (in {scratch}) exited {result.returncode}:\n{tail}")
            scratch.rename(final)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    libs = cached()
    assert libs is not None
    return libs


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class KafkaBroker:
    """A single-node KRaft broker (broker and controller in one JVM) on 127.0.0.1, stopped by PID.

    ``bootstrap`` is what clients connect to. ``start`` formats the storage (``kafka.tools.StorageTool
    format``) and starts ``kafka.Kafka``; ``wait_ready`` polls until the broker answers metadata.
    """

    def __init__(self, libs: Path, workdir: Path | None = None, partitions: int = 4, heap: str = "512m",
                 quick_start: bool = False) -> None:
        self.libs = libs
        self.port = processes.free_port()
        self.controller_port = processes.free_port()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mixer-kafka-"))
        self.partitions = partitions
        self.heap = heap
        self.quick_start = quick_start  # only the JIT's first tier: starts faster, runs slower (tests)
        self.log_path = self.workdir / "broker.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def properties(self) -> str:
        data = self.workdir / "data"
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": str(self.partitions),
            # one node: every internal topic has one replica
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # a consumer group forms at once instead of waiting 3 s for more members
            "group.initial.rebalance.delay.ms": "0",
            # workers in tests use short sessions so a killed one is noticed quickly
            "group.min.session.timeout.ms": "1000",
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _java(self, main: str, *args: str, quick: bool = False) -> list[str]:
        # a one-shot tool starts in half the time with only the first JIT tier
        tuning = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"] if quick else []
        return ["java", f"-Xmx{self.heap}", *tuning, f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
                "-cp", f"{self.libs}/*", main, *args]

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "server.properties"
        config.write_text(self.properties())
        (self.workdir / "log4j2.properties").write_text(_LOG4J)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", f"--config={config}",
                       quick=True),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )
        if fmt.returncode != 0:
            raise RuntimeError(f"kafka storage format exited {fmt.returncode}:\n{fmt.stdout}{fmt.stderr}")
        self._proc = processes.start(self._java("kafka.Kafka", str(config), quick=self.quick_start), self.log_path)

    def wait_ready(self, timeout: float = 90.0) -> None:
        try:
            processes.wait_for_port(self.port, timeout, self._proc)
        except (RuntimeError, TimeoutError) as err:
            raise RuntimeError(f"kafka broker not ready: {err}\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
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


def main() -> int:
    try:
        print(ensure())
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
