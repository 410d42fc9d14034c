"""ROTATED_FILE: size-based rotation keeps exactly maxRotatedFiles backups and loses no line."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import orjson

from adapters.stdio import RotatingFile, StdioAdapter
from mixer.sdk import Env, Instance
from mixer.selfmetrics import SelfMetrics

MEGABYTE = 1024 * 1024


def entries(first: int, count: int) -> list[Instance]:
    # ~1 KiB per line, so a 1 MB file holds about a thousand
    return [Instance("accesslog.instance.istio-system", "logentry",
                     {"severity": "Info", "variables": {"n": n, "pad": "x" * 1000}})
            for n in range(first, first + count)]


def numbers(path: Path) -> list[int]:
    return [orjson.loads(line)["n"] for line in path.read_bytes().splitlines()]


async def write_through_handler(tmp_path: Path, keep: int, batches: int, per_batch: int) -> tuple[Path, Env]:
    out = tmp_path / "access.log"
    env = Env("stdio.handler.ns", logging.getLogger("test"), SelfMetrics())
    adapter = StdioAdapter()
    params = adapter.parse_params({"logStream": "ROTATED_FILE", "outputPath": str(out),
                                   "maxMegabytesBeforeRotation": 1, "maxRotatedFiles": keep})
    handler = adapter.build(params, env, {})
    await handler.start()
    for batch in range(batches):
        handler.handle_logentry(entries(batch * per_batch, per_batch))
    await handler.close()
    return out, env


async def test_rotation_keeps_the_configured_number_of_files_and_the_newest_lines(tmp_path: Path) -> None:
    out, env = await write_through_handler(tmp_path, keep=3, batches=60, per_batch=100)  # ~6 MB: 5 rotations
    rotating = RotatingFile(out, MEGABYTE, 3, 0, lambda: 0.0)
    backups = rotating.backups()
    assert len(backups) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, *(b.name for b in backups)])
    for path in [*backups, out]:
        assert path.stat().st_size <= MEGABYTE
    kept = [n for path in [*backups, out] for n in numbers(path)]
    # the newest lines, in order, none missing between the oldest kept one and the last written
    assert kept == list(range(kept[0], 6000))
    assert kept[0] > 0
    assert env.metrics.dropped_instances.labels("stdio.handler.ns", "write_error")._value.get() == 0


async def test_with_room_for_every_backup_no_line_is_lost(tmp_path: Path) -> None:
    out, _ = await write_through_handler(tmp_path, keep=100, batches=35, per_batch=100)
    backups = RotatingFile(out, MEGABYTE, 100, 0, lambda: 0.0).backups()
    assert len(backups) == 3  # ~3.5 MB in files of at most 1 MB
    assert [n for path in [*backups, out] for n in numbers(path)] == list(range(3500))


def test_backups_older_than_max_days_are_removed(tmp_path: Path) -> None:
    now = [dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()]
    log = RotatingFile(tmp_path / "a.log", 100, 0, 2, lambda: now[0])
    log.open()
    for _ in range(6):
        now[0] += 86400
        log.write_lines([b"x" * 60 + b"\n"])  # each line after the first rotates (61 + 61 > 100)
    log.close()
    stamps = [p.name for p in log.backups()]
    # rotations on Jan 3..7; at the last one those more than 2 days old (Jan 3, 4) were removed
    assert [s[2:12] for s in stamps] == ["2026-01-05", "2026-01-06", "2026-01-07"]


def test_a_line_longer_than_the_limit_gets_a_file_of_its_own(tmp_path: Path) -> None:
    log = RotatingFile(tmp_path / "a.log", 10, 0, 0, lambda: 1_700_000_000.0)
    log.open()
    log.write_lines([b"short\n", b"a line far longer than ten bytes\n", b"end\n"])
    log.close()
    files = [*log.backups(), tmp_path / "a.log"]
    assert [p.read_bytes() for p in files] == [b"short\n", b"a line far longer than ten bytes\n", b"end\n"]
