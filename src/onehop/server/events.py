"""The server's event log: JSON lines, never a client IP address.

Events are named as Psiphon's server logs them (``server_tunnel``, ``unique_user``,
``irregular_tunnel``, ``remote_server_list``, ``failed_tunnel``; fields in ``stats``)
and each carries the server's ``host_id``. Every line is flushed as it is written, with
one write call per line, so a killed server loses nothing it logged. A write failure
(full disk, read-only file) stops logging with one clear error while the server keeps
serving.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, UTC
from typing import Any, TextIO
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Large enough that a line always leaves in a single write call.
WRITE_BUFFER = 1 << 20


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventLog:
    def __init__(self, path: str | None, clock: Callable[[], float] = time.time,
                 host_id: str | None = None, stream: TextIO | None = None) -> None:
        """Events go to ``path`` or, without one, to ``stream`` (not closed here), or nowhere."""
        self.path = path
        self.stream = None if path else stream
        self._clock = clock
        self._host_id = host_id
        self._file: TextIO | None = None
        self.failed: str | None = None
        self.written = 0
        #: fields every event carries besides host_id (a worker process sets its ``worker_id``)
        self.fields: dict[str, Any] = {}
        if path:
            try:
                os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
                self._file = open(path, "a", encoding="utf-8", buffering=WRITE_BUFFER)
            except OSError as exc:
                self._fail(exc)
        elif self.stream is not None:
            self._file = self.stream

    def _fail(self, exc: OSError) -> None:
        self.failed = f"event log {self.path} disabled: {exc.strerror or exc}"
        log.error("%s; the server keeps serving without stats", self.failed)
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
        self._file = None

    def write(self, event_name: str, **fields: Any) -> None:
        if self._file is None:
            return
        record = {**self.fields, **fields, "event_name": event_name, "timestamp": rfc3339(self._clock())}
        if self._host_id is not None:
            record["host_id"] = self._host_id
        try:
            self._file.write(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")
            self._file.flush()
            self.written += 1
        except OSError as exc:
            self._fail(exc)

    def irregular_tunnel(self, listener: str, reason: str, **geoip: str) -> None:
        self.write("irregular_tunnel", listener_protocol=listener, tunnel_error=reason, **geoip)

    def server_tunnel(self, fields: dict) -> None:
        self.write("server_tunnel", **fields)

    def unique_user(self, fields: dict) -> None:
        self.write("unique_user", **fields)

    def client_records(self, records: list[tuple[str, dict]]) -> None:
        """``remote_server_list`` and ``failed_tunnel`` records from a status request."""
        for event_name, fields in records:
            self.write(event_name, **fields)

    def geoip_database_error(self, database: str, error: str) -> None:
        self.write("geoip_database_error", database=database, error=error)

    def traffic_rules_error(self, filename: str, problems: list[str]) -> None:
        self.write("traffic_rules_error", filename=filename, problems=problems)

    def close(self) -> None:
        if self._file is not None and self._file is self.stream:
            self._file.flush()
            self._file = None
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
