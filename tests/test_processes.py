"""``mixer.processes``: the parent keeps no copy of a child's log file, and stopping reaches the whole group."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mixer.processes import INHERIT, start, stop, stop_all, wait_until_ready


def _open_files() -> set[str]:
    """What this process's descriptors point at (files only: sockets and pipes change under pytest)."""
    targets = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor listdir itself used, closed by now
            continue
        if target.startswith("/"):
            targets.add(target)
    return targets


def test_start_closes_the_parents_copy_of_the_log_and_the_child_keeps_writing(tmp_path: Path) -> None:
    log, errors = tmp_path / "child.log", tmp_path / "child.err"
    before = _open_files()
    # The child writes only after start() returned, so it writes through its own descriptor.
    proc = start([sys.executable, "-c", "import sys, time; time.sleep(0.5); print('out'); print('err', file=sys.stderr)"],
                 log, stderr_path=errors)
    try:
        after = _open_files()
        assert str(log) not in after and str(errors) not in after
        assert after == before
        assert proc.wait(30) == 0
        assert log.read_text() == "out\n"
        assert errors.read_text() == "err\n"
    finally:
        stop(proc)


def test_start_appends_when_asked_and_discards_without_a_log(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    log.write_text("earlier\n")
    before = _open_files()
    for path in (log, None):
        proc = start([sys.executable, "-c", "print('later')"], path, append=True)
        assert proc.wait(30) == 0
    assert log.read_text() == "earlier\nlater\n"
    assert _open_files() == before


def test_inherited_output_goes_to_the_parents_streams(tmp_path: Path) -> None:
    out = tmp_path / "parent.out"
    script = ("import sys; from mixer.processes import INHERIT, start; "
              "sys.exit(start([sys.executable, '-c', 'import sys; print(1); print(2, file=sys.stderr)'], INHERIT).wait(30))")
    assert INHERIT == "-"
    proc = start([sys.executable, "-c", script], out, cwd=str(Path(__file__).resolve().parents[1]))
    assert proc.wait(30) == 0
    assert sorted(out.read_text().split()) == ["1", "2"]


def test_stop_all_stops_every_group_including_grandchildren(tmp_path: Path) -> None:
    pid_files = [tmp_path / f"grandchild-{i}" for i in range(2)]
    # Each child starts a grandchild that ignores nothing and outlives its parent unless the group is signalled.
    procs = [start(["sh", "-c", f"sleep 300 & echo $! > {path}; wait"]) for path in pid_files]
    wait_until_ready(lambda: all(p.exists() and p.read_text().strip() for p in pid_files), 10, what="grandchildren")
    grandchildren = [int(p.read_text()) for p in pid_files]
    stop_all(procs, timeout=10)
    assert all(proc.returncode is not None for proc in procs)
    for pid in grandchildren:
        wait_until_ready(lambda: _gone(pid), 10, what=f"grandchild {pid} gone")
    stop_all(procs)  # twice is harmless


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
