"""A log file rotated by size with a retention count and age, as Mixer's stdio adapter did it
(lumberjack): before a write would take the file past its limit, the file is renamed to a backup
``NAME-<UTC time>.EXT`` and a new one is started; then the oldest backups beyond ``max_backups``
and those older than ``max_age_days`` are removed. Lines are never split across files."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

_STAMP = "%Y-%m-%dT%H-%M-%S.%f"  # sorts as the time it names
_STAMP_PATTERN = r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{6}"


class RotatingFile:
    """Appends whole lines to ``path``; ``max_backups``/``max_age_days`` of 0 keep every backup."""

    def __init__(self, path: str | Path, max_bytes: int, max_backups: int, max_age_days: int,
                 clock: Callable[[], float]) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_backups = max_backups
        self.max_age_days = max_age_days
        self.clock = clock
        stem, ext = self.path.stem, self.path.suffix
        self._backup = re.compile(rf"^{re.escape(stem)}-({_STAMP_PATTERN}){re.escape(ext)}$")
        self._last_stamp: dt.datetime | None = None
        self._file: IO[bytes] | None = None
        self._size = 0

    def open(self) -> None:
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._size = self._file.tell()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None

    def write_lines(self, lines: Sequence[bytes]) -> None:
        """Write ``lines`` (each ending in a newline), rotating between lines as needed."""
        if self._file is None:
            raise OSError(f"{self.path} is not open")
        pending: list[bytes] = []
        pending_size = 0
        for line in lines:
            if self._size + pending_size + len(line) > self.max_bytes and self._size + pending_size > 0:
                self._file.write(b"".join(pending))
                pending, pending_size = [], 0
                self._rotate()
            pending.append(line)
            pending_size += len(line)
        if pending:
            self._file.write(b"".join(pending))
            self._size += pending_size
        self._file.flush()

    def backups(self) -> list[Path]:
        """Rotated files, oldest first."""
        found = [(m.group(1), entry) for entry in self.path.parent.iterdir() if (m := self._backup.match(entry.name))]
        return [entry for _, entry in sorted(found)]

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        now = dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc)
        if self._last_stamp is not None and now <= self._last_stamp:
            now = self._last_stamp + dt.timedelta(microseconds=1)  # two rotations within a clock tick
        self._last_stamp = now
        os.replace(self.path, self.path.with_name(f"{self.path.stem}-{now.strftime(_STAMP)}{self.path.suffix}"))
        self.open()
        self._remove_old(now)

    def _remove_old(self, now: dt.datetime) -> None:
        backups = self.backups()
        doomed: list[Path] = []
        if self.max_backups:
            doomed += backups[: max(len(backups) - self.max_backups, 0)]
        if self.max_age_days:
            cutoff = now - dt.timedelta(days=self.max_age_days)
            for backup in backups:
                match = self._backup.match(backup.name)
                assert match is not None
                stamp = dt.datetime.strptime(match.group(1), _STAMP).replace(tzinfo=dt.timezone.utc)
                if stamp < cutoff:
                    doomed.append(backup)
        for backup in set(doomed):
            backup.unlink(missing_ok=True)
