"""Processes seen from outside: ``pid_alive``, ``child_states``."""

from __future__ import annotations

import contextlib
import os


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie counts: reaping is its parent's business)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def child_states(pid: int) -> dict[int, str]:
    """The children of ``pid`` (from /proc) and the state letter of each ("Z": a zombie)."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found[int(name)] = fields[0]
    return found
