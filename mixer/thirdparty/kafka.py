"""Apache Kafka's broker on free loopback ports: a single KRaft node (broker and controller in one
JVM) with its storage formatted first, stopped by PID. The jars come from ``ensure("kafka")``
(``python -m mixer.thirdparty kafka``): Maven Central's ``org.apache.kafka:kafka_2.13`` and its
dependencies, run on the machine's Java 17.

    with KafkaBroker(ensure("kafka")) as broker:
        ...  # clients connect to broker.bootstrap
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Self

from mixer import processes

_LOG4J = """rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = INFO
"""


class KafkaBroker:
    """A single-node KRaft broker (broker and controller in one JVM) on 127.0.0.1, stopped by PID.

    ``bootstrap`` is what clients connect to. ``start`` formats the storage (``kafka.tools.StorageTool
    format``) and starts ``kafka.Kafka``; ``wait_ready`` polls until the broker answers metadata.
    """

    def __init__(self, launcher: Path, workdir: Path | None = None, partitions: int = 4, heap: str = "512m",
                 quick_start: bool = False) -> None:
        self.libs = launcher.parent / "libs"  # the launcher's jars: java runs here with its own options
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
