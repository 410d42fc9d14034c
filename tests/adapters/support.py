"""What adapter unit tests share: an Env with its own metrics and a fixed clock."""

from __future__ import annotations

import logging

from mixer.sdk import Env
from mixer.selfmetrics import SelfMetrics


def env(handler_name: str = "h.handler.ns") -> Env:
    return Env(handler_name, logging.getLogger("test"), SelfMetrics(), clock=lambda: 1_700_000_000.0)
