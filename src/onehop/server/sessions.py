"""One live SSH connection per client session ID: a new login replaces the old one."""

from __future__ import annotations

from collections.abc import Callable


class SessionRegistry:
    def __init__(self) -> None:
        self._closers: dict[str, Callable[[], None]] = {}

    def __len__(self) -> int:
        return len(self._closers)

    def register(self, session_id: str, close: Callable[[], None]) -> None:
        """Record a session; an existing connection with this ID is closed first."""
        previous = self._closers.pop(session_id, None)
        if previous is not None:
            previous()
        self._closers[session_id] = close

    def unregister(self, session_id: str, close: Callable[[], None]) -> None:
        # ==, not is: a session passes its bound method ``self.close``, a new object at
        # each access; equal when bound to the same session
        if self._closers.get(session_id) == close:
            del self._closers[session_id]
