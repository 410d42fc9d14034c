"""Start real servers as child processes and stop them by PID (the package's own helpers)."""

from __future__ import annotations

from mixer.processes import start, stop, wait_for_port

__all__ = ["start", "stop", "wait_for_port"]
