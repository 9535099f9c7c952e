"""A bounded, redacted log of the client's notices in its data directory.

``<data dir>/notices.log`` holds one notice per line (Psiphon's JSON) and is rotated to
``notices.log.1`` past ``max_bytes``, so at most twice that is ever kept. Every notice
is redacted *before* it is written (no address, no secret reaches the disk), which is
what lets ``onehop feedback send`` attach the recent history of a client that is not
running any more.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import Any

from ...core.redact import Redactor

LOG_NAME = "notices.log"
DEFAULT_MAX_BYTES = 512 * 1024


def log_path(data_dir: str) -> str:
    return os.path.join(data_dir, LOG_NAME)


class NoticeLog:
    """A notices subscriber: ``notices.subscribe(NoticeLog(data_dir))``."""

    def __init__(self, data_dir: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 redactor: Redactor | None = None) -> None:
        self.path = log_path(data_dir)
        self.max_bytes = max_bytes
        self._redactor = redactor or Redactor()
        self._lock = threading.Lock()
        os.makedirs(data_dir, mode=0o700, exist_ok=True)

    def __call__(self, notice: Mapping[str, Any]) -> None:
        line = json.dumps(self._redactor.value(dict(notice)), separators=(",", ":"), default=str) + "\n"
        with self._lock:
            self._rotate_if_full(len(line))
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)

    def _rotate_if_full(self, adding: int) -> None:
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return
        if size + adding > self.max_bytes:
            os.replace(self.path, self.path + ".1")


def attach_notice_log(notices: Any, data_dir: str, **options: Any) -> NoticeLog:
    """Subscribe a :class:`NoticeLog` to a ``Notices`` object; returns the log."""
    log = NoticeLog(data_dir, **options)
    notices.subscribe(log)
    return log


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readlines()
    except OSError:
        return []


def read_notice_log(data_dir: str, limit: int = 500) -> list[dict]:
    """The last ``limit`` notices, oldest first; unreadable lines are skipped."""
    path = log_path(data_dir)
    notices = []
    for line in _read_lines(path + ".1") + _read_lines(path):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "noticeType" in value:
            notices.append(value)
    return notices[-limit:] if limit else []
