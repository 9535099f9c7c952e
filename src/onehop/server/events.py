"""The server's event log: JSON lines, never a client IP address.

Events are named as Psiphon's server logs them (``server_tunnel``, ``unique_user``,
``irregular_tunnel``). A write failure (full disk, read-only file) stops logging with
one clear error while the server keeps serving.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, TextIO

log = logging.getLogger(__name__)


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventLog:
    def __init__(self, path: str | None, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._file: TextIO | None = None
        self.failed: str | None = None
        if path:
            try:
                self._file = open(path, "a", encoding="utf-8")
            except OSError as exc:
                self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self.failed = f"event log {self.path} disabled: {exc.strerror or exc}"
        log.error(self.failed)
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
        self._file = None

    def write(self, event_name: str, **fields: Any) -> None:
        if self._file is None:
            return
        record = {**fields, "event_name": event_name, "timestamp": rfc3339(self._clock())}
        try:
            self._file.write(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")
            self._file.flush()
        except OSError as exc:
            self._fail(exc)

    def irregular_tunnel(self, listener: str, reason: str) -> None:
        self.write("irregular_tunnel", listener_protocol=listener, tunnel_error=reason)

    def server_tunnel(self, session) -> None:
        handshake = session.handshake
        fields = dict(handshake.params) if handshake else {}
        fields.update(relay_protocol=session.tunnel_protocol,
                      client_region=handshake.client_region if handshake else "None",
                      handshake_completed=handshake is not None,
                      start_time=rfc3339(session.started),
                      duration_ms=int((self._clock() - session.started) * 1000),
                      bytes_up=session.bytes.up, bytes_down=session.bytes.down,
                      port_forwards=session.forwards_opened,
                      rejected_port_forwards=session.forwards_rejected)
        self.write("server_tunnel", **fields)

    def unique_user(self, session) -> None:
        handshake = session.handshake
        fields = dict(handshake.params) if handshake else {}
        fields["client_region"] = handshake.client_region if handshake else "None"
        self.write("unique_user", **fields)

    def client_stats(self, session, status_data: dict) -> None:
        """Persistent stats clients ship in status requests (detailed in later work)."""

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
