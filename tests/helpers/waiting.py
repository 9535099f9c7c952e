"""Waiting for a condition the code under test makes true, with a deadline: ``wait_until``
on an event loop (the predicate may be a coroutine function), ``poll_until`` in plain
threads. Both return the predicate's (truthy) value and fail with an ``AssertionError``
naming ``what``."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any
from collections.abc import Callable


async def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
                     interval: float = 0.02) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := await _value(predicate)):
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)
    return value


async def _value(predicate: Callable[[], Any]) -> Any:
    value = predicate()
    return await value if inspect.isawaitable(value) else value


def poll_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
               interval: float = 0.05, alive: Callable[[], None] | None = None) -> Any:
    """``alive()``, called each round, raises if what we wait on has died."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return value
