"""Free loopback ports for servers started by tests (the package's own helper)."""

from __future__ import annotations

from mixer.processes import free_port

__all__ = ["free_port"]
