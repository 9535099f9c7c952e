"""The psinet snapshot a server reads: sponsors, home pages, client versions, discovery.

The central database exports it as a JSON file (Psiphon's psinet format); the server
never queries the database. ``PsinetStore`` re-reads the file when it changes and keeps
the last good snapshot when a new one is malformed.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

UNKNOWN_REGION = "None"


@dataclass(frozen=True)
class Sponsor:
    id: str
    home_pages: dict[str, tuple[str, ...]]          # region -> URLs; region "None" = default
    mobile_home_pages: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class PsinetSnapshot:
    sponsors: dict[str, Sponsor] = field(default_factory=dict)
    default_sponsor_id: str = ""
    client_versions: dict[str, tuple[int, ...]] = field(default_factory=dict)  # ascending
    valid_server_entry_tags: frozenset[str] = frozenset()
    discovery_servers: tuple[dict, ...] = ()
    discovery: dict = field(default_factory=dict)  # strategy and key, see network export
    raw: dict = field(default_factory=dict)

    def homepages(self, sponsor_id: str, region: str, mobile: bool,
                  shuffle: Callable[[list], None] = random.shuffle) -> list[str]:
        """Home pages for the client's sponsor and region, with the region filled in."""
        sponsor = self.sponsors.get(sponsor_id) or self.sponsors.get(self.default_sponsor_id)
        if sponsor is None:
            return []
        table = sponsor.mobile_home_pages if mobile and sponsor.mobile_home_pages else sponsor.home_pages
        urls = list(table.get(region) or table.get(UNKNOWN_REGION) or ())
        shuffle(urls)
        return [u.replace("client_region=XX", f"client_region={region}") for u in urls]

    def upgrade_client_version(self, client_version: str, platform: str) -> str | None:
        """The newest version for ``platform`` if it is newer than the client's."""
        versions = self.client_versions.get(platform)
        try:
            current = int(client_version)
        except ValueError:
            return None
        if versions and versions[-1] > current:
            return str(versions[-1])
        return None


def _urls(entries: Any) -> tuple[str, ...]:
    return tuple(e["url"] for e in entries or () if isinstance(e, dict) and isinstance(e.get("url"), str))


def _sponsor(sponsor_id: str, raw: dict) -> Sponsor:
    return Sponsor(
        sponsor_id,
        {region: _urls(pages) for region, pages in (raw.get("home_pages") or {}).items()},
        {region: _urls(pages) for region, pages in (raw.get("mobile_home_pages") or {}).items()},
    )


def parse_psinet(raw: dict) -> PsinetSnapshot:
    """Build a snapshot from Psiphon's psinet JSON; raises ValueError when malformed."""
    if not isinstance(raw, dict):
        raise ValueError("psinet database must be a JSON object")
    sponsors = {sid: _sponsor(sid, s) for sid, s in (raw.get("sponsors") or {}).items()}
    versions = {platform: tuple(sorted(int(v["version"]) for v in entries))
                for platform, entries in (raw.get("client_versions") or {}).items()}
    return PsinetSnapshot(
        sponsors=sponsors,
        default_sponsor_id=raw.get("default_sponsor_id") or "",
        client_versions=versions,
        valid_server_entry_tags=frozenset(raw.get("valid_server_entry_tags") or ()),
        discovery_servers=tuple(raw.get("discovery_servers") or ()),
        discovery=dict(raw.get("discovery") or {}),
        raw=raw,
    )


class PsinetStore:
    """The current snapshot, reloaded when the file's modification time changes."""

    def __init__(self, path: str | None, on_reload: Callable[[PsinetSnapshot], None] | None = None) -> None:
        self.path = path
        self._mtime: float | None = None
        self._snapshot = PsinetSnapshot()
        self._on_reload = on_reload
        self.last_error: str | None = None
        self.reload_if_changed()

    @property
    def snapshot(self) -> PsinetSnapshot:
        self.reload_if_changed()
        return self._snapshot

    def reload_if_changed(self) -> bool:
        if not self.path:
            return False
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError as exc:
            self.last_error = f"cannot stat psinet database: {exc.strerror}"
            return False
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        try:
            with open(self.path, encoding="utf-8") as f:
                snapshot = parse_psinet(json.load(f))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.last_error = f"psinet database not reloaded, keeping the previous one: {exc}"
            log.warning(self.last_error)
            return False
        self._snapshot, self.last_error = snapshot, None
        if self._on_reload is not None:
            self._on_reload(snapshot)
        return True
