"""Awaiting a coroutine that must run on another thread's event loop (the check loop's state has one owner)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def on_loop(loop: asyncio.AbstractEventLoop | None, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on ``loop`` and await its result from the running loop (directly when the same,
    or when ``loop`` is None). Cancelling the awaiting task cancels the coroutine on the other loop."""
    if loop is None or asyncio.get_running_loop() is loop:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))
