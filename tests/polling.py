"""Waiting for something to happen: poll against a deadline instead of sleeping a fixed time.

A fixed ``sleep(0.2)`` before reading the log passes when the server is quick and fails (or,
worse, passes vacuously) when it is slow; these helpers return as soon as the condition holds
and fail loudly, naming what never happened, when the deadline passes. Under the load of a
shared CI machine only the deadline stretches, never the assertion.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import sniffio
import trio

__all__ = ["DEADLINE", "eventually", "wait_for"]

T = TypeVar("T")

DEADLINE = 10.0
"""Seconds before a wait gives up: generous, since it is only paid when something is wrong."""

_INTERVAL = 0.01


def _outcome(value: T, started: float, timeout: float, what: str) -> T | None:
    """``value`` when it is truthy; ``None`` to poll again; AssertionError past the deadline."""
    if value:
        return value
    if time.monotonic() - started >= timeout:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return None


def wait_for(probe: Callable[[], T], *, what: str, timeout: float = DEADLINE) -> T:
    """Call ``probe()`` until it returns a truthy value, and return that value.

    For plain (synchronous) tests. Raises ``AssertionError`` naming ``what`` when ``timeout``
    seconds pass first; an exception from ``probe`` propagates at once."""
    started = time.monotonic()
    while (value := _outcome(probe(), started, timeout, what)) is None:
        time.sleep(_INTERVAL)
    return value


async def eventually(
    probe: Callable[[], T | Awaitable[T]], *, what: str, timeout: float = DEADLINE
) -> T:
    """:func:`wait_for` for async tests, on asyncio or trio (whichever runs it).

    ``probe`` may be a plain function or return an awaitable (a coroutine reading the server's
    state on its own loop, say); it is awaited before its value is judged."""
    sleep = trio.sleep if sniffio.current_async_library() == "trio" else asyncio.sleep
    started = time.monotonic()
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        result = _outcome(value, started, timeout, what)
        if result is not None:
            return result
        await sleep(_INTERVAL)
