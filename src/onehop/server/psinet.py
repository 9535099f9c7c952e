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
import re
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

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
        return [u.replace("client_region=XX", f"client_region={region}", 1) for u in urls]

    def upgrade_client_version(self, client_version: str, platform: str) -> str | None:
        """The newest version for ``platform`` if it is newer than the client's."""
        versions = self.client_versions.get(platform)
        if not re.fullmatch(r"[0-9]{1,18}", client_version):
            return None
        current = int(client_version)
        if versions and versions[-1] > current:
            return str(versions[-1])
        return None


def _mapping(value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object")
    return value


def _urls(entries: Any, what: str) -> tuple[str, ...]:
    if not isinstance(entries, list):
        raise ValueError(f"{what} must be a list")
    urls = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise ValueError(f"{what} entries must be objects with a string url")
        urls.append(entry["url"])
    return tuple(urls)


def _pages(raw: Any, what: str) -> dict[str, tuple[str, ...]]:
    return {region: _urls(pages, f"{what}[{region}]") for region, pages in _mapping(raw, what).items()}


def _sponsor(sponsor_id: str, raw: Any) -> Sponsor:
    raw = _mapping(raw, f"sponsor {sponsor_id}")
    return Sponsor(sponsor_id, _pages(raw.get("home_pages"), f"{sponsor_id}.home_pages"),
                   _pages(raw.get("mobile_home_pages"), f"{sponsor_id}.mobile_home_pages"))


def _versions(raw: Any) -> dict[str, tuple[int, ...]]:
    versions = {}
    for platform, entries in _mapping(raw, "client_versions").items():
        if not isinstance(entries, list):
            raise ValueError(f"client_versions[{platform}] must be a list")
        numbers = []
        for entry in entries:
            text = entry.get("version") if isinstance(entry, dict) else None
            if not isinstance(text, str) or not re.fullmatch(r"[0-9]{1,18}", text):
                raise ValueError(f"client_versions[{platform}]: bad version {text!r}")
            numbers.append(int(text))
        versions[platform] = tuple(sorted(numbers))
    return versions


def _valid_tags(raw: Any) -> frozenset[str]:
    if isinstance(raw, dict):
        return frozenset(tag for tag, valid in raw.items() if valid is True)
    if isinstance(raw, list):
        return frozenset(tag for tag in raw if isinstance(tag, str))
    if raw is None:
        return frozenset()
    raise ValueError("valid_server_entry_tags must be an object or a list")


def parse_psinet(raw: dict) -> PsinetSnapshot:
    """Build a snapshot from Psiphon's psinet JSON; raises ValueError when malformed."""
    if not isinstance(raw, dict):
        raise ValueError("psinet database must be a JSON object")
    discovery_servers = raw.get("discovery_servers") or []
    if not isinstance(discovery_servers, list) or not all(isinstance(d, dict) for d in discovery_servers):
        raise ValueError("discovery_servers must be a list of objects")
    default_sponsor = raw.get("default_sponsor_id") or ""
    if not isinstance(default_sponsor, str):
        raise ValueError("default_sponsor_id must be a string")
    return PsinetSnapshot(
        sponsors={sid: _sponsor(sid, s) for sid, s in _mapping(raw.get("sponsors"), "sponsors").items()},
        default_sponsor_id=default_sponsor,
        client_versions=_versions(raw.get("client_versions")),
        valid_server_entry_tags=_valid_tags(raw.get("valid_server_entry_tags")),
        discovery_servers=tuple(discovery_servers),
        discovery=dict(_mapping(raw.get("discovery"), "discovery")),
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
