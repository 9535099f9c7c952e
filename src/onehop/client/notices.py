"""Psiphon-style notices: one JSON object per line, as Psiphon's console client prints.

``{"noticeType": "Tunnels", "data": {"count": 1}, "timestamp": "2026-11-25T16:00:00.000Z"}``
Tools written for Psiphon's console client read these unchanged. Listeners (a
terminal view, the feedback collector) can subscribe; the last notices are kept in
memory for diagnostics.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import deque
from datetime import datetime, UTC
from typing import Any, TextIO
from collections.abc import Callable

LISTENING_SOCKS_PROXY_PORT = "ListeningSocksProxyPort"
LISTENING_HTTP_PROXY_PORT = "ListeningHttpProxyPort"
LISTENING_DNS_FORWARDER_PORT = "ListeningDNSForwarderPort"
LISTENING_WEB_UI_PORT = "ListeningWebUIPort"  # onehop's: the port only, never the UI's token
CONNECTING_SERVER = "ConnectingServer"
CONNECTED_SERVER = "ConnectedServer"
ACTIVE_TUNNEL = "ActiveTunnel"
TUNNELS = "Tunnels"
CLIENT_REGION = "ClientRegion"
HOMEPAGE = "Homepage"
AVAILABLE_EGRESS_REGIONS = "AvailableEgressRegions"
CLIENT_UPGRADE_AVAILABLE = "ClientUpgradeAvailable"
REMOTE_SERVER_LIST_DOWNLOADED = "RemoteServerListResourceDownloaded"
CANDIDATE_SERVERS = "CandidateServers"
SERVER_TIMESTAMP = "ServerTimestamp"
UPSTREAM_PROXY_ERROR = "UpstreamProxyError"
UNTUNNELED = "Untunneled"  # a destination reached directly (split tunnel)
CLIENT_UPGRADE_DOWNLOADED = "ClientUpgradeDownloaded"
WHOLE_DEVICE = "WholeDevice"  # onehop's: whole-device mode's state and counters
INFO = "Info"
ALERT = "Alert"
ERROR = "Error"
EXITING = "Exiting"


def psiphon_timestamp(now: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as Psiphon formats notice timestamps."""
    now = now.astimezone(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class Notices:
    """Emits notices to ``stream`` (None: silent) and to subscribers."""

    def __init__(self, stream: TextIO | None = sys.stdout, *, history: int = 500,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._stream = stream
        self._clock = clock
        self._lock = threading.Lock()
        self.recent: deque[dict] = deque(maxlen=history)
        self._subscribers: list[Callable[[dict], None]] = []

    def subscribe(self, callback: Callable[[dict], None]) -> None:
        self._subscribers.append(callback)

    def emit(self, notice_type: str, **data: Any) -> dict:
        notice = {"noticeType": notice_type, "data": data, "timestamp": psiphon_timestamp(self._clock())}
        line = json.dumps(notice, separators=(",", ":"), default=str)
        with self._lock:
            self.recent.append(notice)
            if self._stream is not None:
                self._stream.write(line + "\n")
                self._stream.flush()
        for callback in list(self._subscribers):
            try:
                callback(notice)
            except Exception:  # one broken listener must not silence the others
                logging.getLogger(__name__).exception("notice subscriber failed")
        return notice

    def info(self, message: str, **data: Any) -> None:
        self.emit(INFO, message=message, **data)

    def alert(self, message: str, **data: Any) -> None:
        self.emit(ALERT, message=message, **data)

    def error(self, message: str, **data: Any) -> None:
        self.emit(ERROR, message=message, **data)
