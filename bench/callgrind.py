"""Instructions counted by valgrind's callgrind, for the benchmarks' figures that the machine's load
does not move (CPU figures of a shared machine move 20-40% from run to run)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


def callgrind_total(path: Path) -> int:
    """The instructions a callgrind output file counted (0 when it has no totals line)."""
    match = re.search(r"^(?:summary|totals): (\d+)", path.read_text(errors="replace"), re.M)
    return int(match.group(1)) if match else 0


def counted_reduces(script_args: Sequence[str], min_total: int, timeout: float) -> list[int]:
    """Run ``python *script_args`` under callgrind counting only inside ``functools.reduce`` calls,
    one dump after each, and answer the dumps' totals in order. The script puts the work to count
    inside reduce calls (set-up and the interpreter's start are left out); other code calls reduce
    too, a few thousand instructions each, so only dumps above ``min_total`` are kept."""
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        _run(["--collect-atstart=no", "--toggle-collect=functools_reduce", "--dump-after=functools_reduce"],
             out, [sys.executable, *script_args], timeout)
        dumps = sorted(Path(tmp).glob("callgrind.out*"), key=lambda p: [int(n) for n in re.findall(r"\d+", p.name)])
        return [total for p in dumps if (total := callgrind_total(p)) > min_total]


def process_total(argv: Sequence[str], timeout: float) -> int:
    """Instructions of the whole ``argv`` process (not its children), counted by callgrind."""
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        _run([], out, argv, timeout)
        return callgrind_total(out)


def _run(options: Sequence[str], out: Path, argv: Sequence[str], timeout: float) -> None:
    """``argv`` under callgrind with ``options``, writing ``out``; hash seed fixed, so dict and set
    orders (and so the counts) repeat from run to run."""
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", *options, f"--callgrind-out-file={out}", *argv],
        capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"}, timeout=timeout,
    )
    if run.returncode:
        raise RuntimeError(f"the counted run failed ({run.returncode}):\n{run.stderr[-3000:]}")
