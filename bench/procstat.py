"""CPU time of processes from /proc, for the benchmarks' per-request CPU figures, and pinning a
started process's threads to CPUs."""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(stat: str) -> list[str]:
    """/proc/PID/stat's fields after the command name (which may hold spaces and parentheses)."""
    return stat[stat.rindex(")") + 2:].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` so far (stat fields 14 and 15), counted in clock ticks
    (10 ms): a measured window must be many ticks long."""
    fields = _stat_fields(Path(f"/proc/{pid}/stat").read_text())
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of process ``root`` and every live descendant (``serve --workers`` starts
    its workers in sessions of their own, so a process group would miss them)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = _stat_fields(handle.read())
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])  # field 4 of stat: the parent
        ticks[int(entry)] = int(fields[11]) + int(fields[12])  # utime, stime
    total = 0
    for pid, own in ticks.items():
        ancestor = pid
        while ancestor > 1 and ancestor != root:
            ancestor = parents.get(ancestor, 0)
        if ancestor == root:
            total += own
    return total / CLOCK_TICKS


def pin_threads(pid: int, cpus: set[int]) -> None:
    """Move every thread of ``pid`` (a started process) to ``cpus``; the threads it starts later
    inherit the set from the thread that starts them."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:  # a thread that just ended
            pass
