"""Kafka's entry in the third-party cache: Maven's jars beside a ``kafka-java`` launcher that runs
them (the broker itself is exercised by tests/kafka, against ``KafkaBroker``)."""

from __future__ import annotations

import re
import subprocess

from mixer.thirdparty import PROGRAMS, ensure


def test_the_launcher_runs_kafkas_own_tools() -> None:
    launcher = ensure("kafka")
    program = PROGRAMS["kafka"]
    assert launcher.name == program.binary and launcher.parent.name == f"kafka-{program.version}"
    assert (launcher.parent / "libs" / f"kafka_2.13-{program.version}.jar").is_file()
    result = subprocess.run([str(launcher), "kafka.tools.StorageTool", "random-uuid"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", result.stdout.strip().splitlines()[-1])
