"""Building the third-party programs into a per-user cache, once: from source with Go (Jaeger, the
collector), or fetched with Maven (Apache Kafka's broker, whose "binary" is a launcher beside its jars).

Each program lands in ``${XDG_CACHE_HOME:-~/.cache}/mixer/<name>-<version>/``. A build runs in a
scratch folder beside it under a file lock (two test runs that start together build once) and is
renamed into place only when it succeeded, so a half build is never used. A failing step raises
``BuildError`` naming the step, the command and the end of its output.

    python -m mixer.thirdparty jaeger otelcol kafka    # builds what is missing, prints the binaries' paths
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

# The collector's modules move in lock-step: every component at one release, the builder too.
OTELCOL_VERSION = "0.161.0"
CONTRIB = "github.com/open-telemetry/opentelemetry-collector-contrib"
CORE = "go.opentelemetry.io/collector"


# run(step, command, cwd): one build step; raises BuildError naming the step when it fails.
StepRunner = Callable[[str, Sequence[str], Path], None]


class BuildError(RuntimeError):
    """A build step failed; the message names the program, the step, the command and its output."""


@dataclass(frozen=True)
class Program:
    name: str
    version: str
    binary: str  # file name inside the program's folder
    summary: str
    build: Callable[[Program, Path, StepRunner], None]  # (program, scratch folder, run); binary into scratch/out
    # Raised when what is built changes at the same version (a component added), so that a cached
    # build without it is not taken for the new one.
    revision: int = 1

    @property
    def folder_name(self) -> str:
        suffix = f"-r{self.revision}" if self.revision > 1 else ""
        return f"{self.name}-{self.version}{suffix}"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mixer"


def cached(name: str) -> Path | None:
    """The program's binary when it has been built, without building it."""
    program = _program(name)
    path = cache_root() / program.folder_name / program.binary
    return path if path.is_file() and os.access(path, os.X_OK) else None


def ensure(name: str, log: TextIO | None = sys.stderr) -> Path:
    """The program's binary, built first when missing (minutes on a cold machine)."""
    program = _program(name)
    found = cached(name)
    if found:
        return found
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{program.folder_name}.lock"):
        found = cached(name)  # another process built it while this one waited
        if found:
            return found
        final = root / program.folder_name
        if final.exists():  # a folder without its binary: not ours to trust
            shutil.rmtree(final)
        for stale in root.glob(f".{program.folder_name}.build-*"):  # a killed build's; none runs (the lock)
            shutil.rmtree(stale, ignore_errors=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{program.folder_name}.build-", dir=root))
        started = time.monotonic()
        try:
            _say(log, f"building {program.name} {program.version} ({program.summary}) in {scratch} ...")
            out = scratch / "out"
            out.mkdir()
            program.build(program, scratch, _runner(program, scratch, log))
            if not (out / program.binary).is_file():
                raise BuildError(f"{program.name} {program.version}: the build left no {program.binary} in {out}")
            os.replace(out, final)  # atomic: the folder appears complete or not at all
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        _say(log, f"built {program.name} {program.version} in {time.monotonic() - started:.0f}s: {final / program.binary}")
    return final / program.binary


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _say(log: TextIO | None, message: str) -> None:
    if log is not None:
        print(f"mixer.thirdparty: {message}", file=log, flush=True)


def _runner(program: Program, scratch: Path, log: TextIO | None) -> StepRunner:
    go = shutil.which("go") or next((p for p in ("/usr/local/go/bin/go",) if os.access(p, os.X_OK)), None)
    env = dict(os.environ)
    # Static binaries that need no C toolchain; a private GOPATH-less module mode build.
    env.update(CGO_ENABLED="0", GO111MODULE="on", GOFLAGS="-buildvcs=false", GOWORK="off")

    def run(step: str, args: Sequence[str], cwd: Path) -> None:
        if args[0] != "go" and shutil.which(args[0]) is None:
            raise BuildError(f"{program.name} {program.version}: step '{step}' needs {args[0]}, which is not on PATH")
        if args[0] == "go" and go is None:
            raise BuildError(f"{program.name} {program.version}: step '{step}' needs the go command, which is not on PATH")
        command = [go if args[0] == "go" and go else args[0], *args[1:]]
        _say(log, f"  {program.name}: {step}: {' '.join(args)}")
        started = time.monotonic()
        output = scratch / f"{step.replace(' ', '-')}.log"
        with open(output, "wb") as sink:
            code = subprocess.run(command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, check=False).returncode
        if code != 0:
            tail = output.read_text(errors="replace").strip().splitlines()[-25:]
            raise BuildError(
                f"{program.name} {program.version}: step '{step}' failed (exit {code}): {' '.join(args)}\n"
                + "\n".join(f"    {line}" for line in tail)
            )
        _say(log, f"  {program.name}: {step}: done in {time.monotonic() - started:.0f}s")

    return run


def _build_jaeger(program: Program, scratch: Path, run: StepRunner) -> None:
    # Jaeger v2 is cmd/jaeger of the v1.x Go module (the Go module never took a /v2 path).
    package = "github.com/jaegertracing/jaeger/cmd/jaeger"
    module = scratch / "module"
    module.mkdir()
    run("go mod init", ["go", "mod", "init", "mixer.local/jaeger"], module)
    run("go get", ["go", "get", "-tool", f"{package}@v{program.version}"], module)
    run("go build", ["go", "build", "-trimpath", "-o", str(scratch / "out" / program.binary), package], module)


OTELCOL_MANIFEST = """\
dist:
  name: {binary}
  description: OpenTelemetry Collector for the mixer's tests and benchmarks
  output_path: {output}
  version: {version}
receivers:
  - gomod: {core}/receiver/otlpreceiver v{version}
exporters:
  - gomod: {core}/exporter/debugexporter v{version}
  - gomod: {core}/exporter/otlpexporter v{version}
  - gomod: {contrib}/exporter/fileexporter v{version}
  - gomod: {contrib}/exporter/prometheusexporter v{version}
processors:
  - gomod: {core}/processor/batchprocessor v{version}
  - gomod: {contrib}/processor/deltatocumulativeprocessor v{version}
connectors:
  - gomod: {contrib}/connector/countconnector v{version}
  - gomod: {contrib}/connector/signaltometricsconnector v{version}
"""


def _build_otelcol(program: Program, scratch: Path, run: StepRunner) -> None:
    # The collector's own builder (ocb), at the same release as the components, writes main.go and
    # components.go for exactly these components and builds them.
    tools = scratch / "builder"
    tools.mkdir()
    builder = scratch / "ocb"
    run("go mod init", ["go", "mod", "init", "mixer.local/ocb"], tools)
    run("go get builder", ["go", "get", "-tool", f"{CORE}/cmd/builder@v{program.version}"], tools)
    run("go build builder", ["go", "build", "-o", str(builder), f"{CORE}/cmd/builder"], tools)
    manifest = scratch / "manifest.yaml"
    manifest.write_text(OTELCOL_MANIFEST.format(
        binary=program.binary, output=scratch / "dist", version=program.version, core=CORE, contrib=CONTRIB))
    run("builder", [str(builder), f"--config={manifest}"], scratch)
    os.replace(scratch / "dist" / program.binary, scratch / "out" / program.binary)


KAFKA_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.mixer</groupId>
  <artifactId>kafka-broker-fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{version}</version></dependency>
    <!-- the broker logs through slf4j 1.x; without this binding it logs nothing at all -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""
KAFKA_LOG4J_VERSION = "2.25.5"
KAFKA_LAUNCHER = """#!/bin/sh
# java with Apache Kafka's jars on the class path: kafka-java MAIN-CLASS ARGS... (JAVA_OPTS first)
exec java $JAVA_OPTS -cp "$(dirname "$0")/libs/*" "$@"
"""


def _fetch_kafka(program: Program, scratch: Path, run: StepRunner) -> None:
    # The broker is published on Maven Central with its dependencies; a throwaway pom lets Maven
    # resolve and copy them. Nothing is built: the jars run on the machine's Java 17.
    if shutil.which("java") is None:
        raise BuildError(f"{program.name} {program.version}: the broker runs on Java 17+, and java is not on PATH")
    (scratch / "pom.xml").write_text(KAFKA_POM.format(version=program.version, log4j=KAFKA_LOG4J_VERSION))
    run("mvn copy-dependencies", ["mvn", "-q", "-B", "dependency:copy-dependencies",
                                  f"-DoutputDirectory={scratch / 'out' / 'libs'}", "-DincludeScope=runtime"], scratch)
    launcher = scratch / "out" / program.binary
    launcher.write_text(KAFKA_LAUNCHER)
    launcher.chmod(0o755)


PROGRAMS: dict[str, Program] = {
    program.name: program
    for program in (
        Program("jaeger", "1.76.0", "jaeger", "Jaeger v2, cmd/jaeger of the Go module", _build_jaeger),
        Program("otelcol", OTELCOL_VERSION, "otelcol-mixer",
                "OpenTelemetry Collector: otlp receiver, count/signaltometrics connectors, deltatocumulative "
                "processor, prometheus/file/debug/otlp exporters", _build_otelcol, revision=2),
        Program("kafka", "4.4.0", "kafka-java",
                "Apache Kafka's broker (org.apache.kafka:kafka_2.13) and its jars, fetched with Maven", _fetch_kafka),
    )
}


def _program(name: str) -> Program:
    try:
        return PROGRAMS[name]
    except KeyError:
        raise KeyError(f"unknown program {name!r} (known: {', '.join(PROGRAMS)})") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixer.thirdparty", description="Build the third-party programs that are missing and print their paths.")
    parser.add_argument("names", nargs="*", default=list(PROGRAMS), help=f"programs (default: all of {', '.join(PROGRAMS)})")
    parser.add_argument("--check", action="store_true", help="build nothing; exit 1 when one is missing")
    args = parser.parse_args(argv)
    status = 0
    for name in args.names:
        if name not in PROGRAMS:
            parser.error(f"unknown program {name!r} (known: {', '.join(PROGRAMS)})")
        try:
            path = cached(name) if args.check else ensure(name)
        except BuildError as err:
            print(f"mixer.thirdparty: {err}", file=sys.stderr)
            status = 1
            continue
        if path is None:
            print(f"{name}: missing", file=sys.stderr)
            status = 1
        else:
            print(f"{name}: {path}")
    return status
