"""Server-side discovery: which one extra server a handshake hands out.

The candidates, their date windows, the strategy (``consistent`` by default, or
``classic``) and the HMAC key come from the psinet snapshot the central database
exports; the choice depends only on the client's IP (kept in memory) and the time.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, UTC
from typing import Any
from collections.abc import Callable

from ..core.discovery import Discovery, DiscoveryServer, Strategy
from ..core.serverentry import decode_server_entry
from ..errors import OnehopError
from .psinet import PsinetSnapshot

log = logging.getLogger(__name__)


def _parse_time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError("discovery_date_range times must be RFC 3339 strings")
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def discovery_servers(snapshot: PsinetSnapshot) -> list[DiscoveryServer]:
    """The snapshot's discovery servers in database order; malformed ones are skipped."""
    servers = []
    for item in snapshot.discovery_servers:
        try:
            start, end = item["discovery_date_range"]
            encoded = item["encoded_server_entry"]
            ip = decode_server_entry(encoded).ip_address
            servers.append(DiscoveryServer(ip, encoded, _parse_time(start), _parse_time(end)))
        except (KeyError, TypeError, ValueError, OnehopError) as exc:
            log.warning("skipping a malformed discovery server: %s", exc)
    return servers


class ServerDiscovery:
    """Rebuilt whenever the psinet snapshot changes; ``select`` is O(1) per handshake."""

    def __init__(self, fallback_hmac_key: str = "", clock: Callable[[], float] = time.time) -> None:
        self._fallback_key = fallback_hmac_key
        self._clock = clock
        self._source: PsinetSnapshot | None = None
        self._discovery: Discovery | None = None

    def _for(self, snapshot: PsinetSnapshot) -> Discovery | None:
        if snapshot is not self._source:
            self._source = snapshot
            self._discovery = None
            servers = discovery_servers(snapshot)
            strategy = snapshot.discovery.get("strategy") or Strategy.CONSISTENT.value
            key = snapshot.discovery.get("hmac_key") or self._fallback_key
            if servers:
                try:
                    self._discovery = Discovery(servers, strategy, key or None)
                except (ValueError, OnehopError) as exc:
                    log.warning("discovery disabled: %s", exc)
        return self._discovery

    def select(self, snapshot: PsinetSnapshot, client_ip: str) -> list[str]:
        """Zero or one encoded server entries for this client."""
        discovery = self._for(snapshot)
        if discovery is None or not client_ip:
            return []
        try:
            chosen = discovery.select(client_ip, int(self._clock()))
        except OnehopError:
            return []
        return [chosen.encoded_entry] if chosen is not None else []
