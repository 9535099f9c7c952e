"""The one way a long-running onehop command hears SIGTERM and SIGINT (and, where it
reloads, SIGHUP): handlers on the running asyncio loop, never ``signal.signal``, so the
loop wakes at once and nothing runs inside a signal frame.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_stop_signals(callback: Callable[..., Any], *args: Any) -> None:
    """Call ``callback(*args)`` on the running loop at SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, callback, *args)


def on_reload_signal(callback: Callable[..., Any], *args: Any) -> None:
    """Call ``callback(*args)`` on the running loop at SIGHUP."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, callback, *args)


def remove_handlers() -> None:
    """Take back what :func:`on_stop_signals` and :func:`on_reload_signal` installed."""
    loop = asyncio.get_running_loop()
    for sig in (*STOP_SIGNALS, signal.SIGHUP):
        loop.remove_signal_handler(sig)


def stop_event(on_reload: Callable[[], Any] | None = None) -> asyncio.Event:
    """An event set at SIGTERM or SIGINT; ``on_reload`` is called at SIGHUP."""
    stop = asyncio.Event()
    on_stop_signals(stop.set)
    if on_reload is not None:
        on_reload_signal(on_reload)
    return stop
