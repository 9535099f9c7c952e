"""Processes seen from outside: ``pid_alive``."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie counts: reaping is its parent's business)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
