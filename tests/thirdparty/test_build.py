"""The build cache: once, under a lock, renamed into place only when complete, failures named."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mixer.thirdparty import _build
from mixer.thirdparty._build import BuildError, Program, StepRunner, cached, ensure

Run = StepRunner


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "mixer"


def register(monkeypatch: pytest.MonkeyPatch, build: Callable[[Program, Path, Run], None]) -> Program:
    program = Program("tool", "1.0", "tool", "a test program", build)
    monkeypatch.setitem(_build.PROGRAMS, "tool", program)
    return program


def shell_script(text: str) -> Callable[[Program, Path, Run], None]:
    def build(program: Program, scratch: Path, run: Run) -> None:
        run("write", ["sh", "-c", f"printf '#!/bin/sh\\n{text}\\n' > out/tool && chmod +x out/tool"], scratch)
    return build


def test_builds_once_into_name_version(monkeypatch: pytest.MonkeyPatch, private_cache: Path) -> None:
    builds = []

    def build(program: Program, scratch: Path, run: Run) -> None:
        builds.append(scratch)
        shell_script("echo hi")(program, scratch, run)

    register(monkeypatch, build)
    assert cached("tool") is None
    log = io.StringIO()
    path = ensure("tool", log)
    assert path == private_cache / "tool-1.0" / "tool"
    assert os.access(path, os.X_OK)
    assert ensure("tool", log) == path and cached("tool") == path
    assert len(builds) == 1
    assert "building tool 1.0" in log.getvalue() and "write: done" in log.getvalue()
    assert not builds[0].exists()  # the scratch folder is gone
    assert sorted(p.name for p in private_cache.iterdir()) == [".tool-1.0.lock", "tool-1.0"]


def test_a_failing_step_is_named_and_leaves_nothing_usable(monkeypatch: pytest.MonkeyPatch, private_cache: Path) -> None:
    def build(program: Program, scratch: Path, run: Run) -> None:
        (scratch / "out" / "tool").write_text("half")  # a half build that must never be used
        run("compile", ["sh", "-c", "echo 'main.go:3: undefined: foo' >&2; exit 3"], scratch)

    register(monkeypatch, build)
    with pytest.raises(BuildError) as err:
        ensure("tool", None)
    message = str(err.value)
    assert "tool 1.0: step 'compile' failed (exit 3)" in message
    assert "main.go:3: undefined: foo" in message
    assert cached("tool") is None
    assert [p.name for p in private_cache.iterdir()] == [".tool-1.0.lock"]


def test_a_killed_builds_leftovers_are_removed_by_the_next(monkeypatch: pytest.MonkeyPatch, private_cache: Path) -> None:
    register(monkeypatch, shell_script("echo hi"))
    leftover = private_cache / ".tool-1.0.build-killed"
    (leftover / "out").mkdir(parents=True)
    (leftover / "out" / "tool").write_text("half")
    ensure("tool", None)
    assert not leftover.exists()
    assert sorted(p.name for p in private_cache.iterdir()) == [".tool-1.0.lock", "tool-1.0"]


def test_concurrent_builds_build_once(monkeypatch: pytest.MonkeyPatch) -> None:
    builds = []
    gate = threading.Event()

    def build(program: Program, scratch: Path, run: Run) -> None:
        builds.append(scratch)
        gate.wait(5)  # hold the lock while the other caller arrives
        shell_script("echo hi")(program, scratch, run)

    register(monkeypatch, build)
    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(ensure("tool", None))) for _ in range(2)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(30)
    assert len(builds) == 1 and len(paths) == 2 and paths[0] == paths[1]


def test_cli_reports_a_missing_program_with_check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    register(monkeypatch, shell_script("echo hi"))
    assert _build.main(["tool", "--check"]) == 1
    assert "tool: missing" in capsys.readouterr().err
    assert _build.main(["tool"]) == 0
    assert capsys.readouterr().out.strip().endswith("tool-1.0/tool")
    with pytest.raises(SystemExit):
        _build.main(["nonesuch"])
