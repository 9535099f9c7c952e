"""What the page shows, kept up to date from the client's notices (no polling by the page).

``LiveState`` subscribes to the notices (through ``ClientControl``), keeps the parts a
person reads (state and since when, home pages, upgrade and remote-list progress, the
last notices as sentences), samples the byte counters once a second for the rate graph,
and calls ``changed`` whenever there is something new to push to open pages.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from .. import notices as N
from .port import ClientControl

REMOTE_LIST_STARTED = "remote server list download started"
REMOTE_LIST_FAILED = "remote server list download failed"
UPGRADE_PROGRESS = "upgrade download progress"
UPGRADE_FAILED = "client upgrade failed"
USER_CONNECT = "connecting: asked by the user"  # the controller's connect()
NOTICES_KEPT = 30
SAMPLES_KEPT = 60


def region(value) -> str:
    """A region code, or "" when unknown (a server without GeoIP says "None")."""
    text = str(value or "")
    return "" if text in ("None", "?") else text


def sentence(data: dict) -> str:
    message = str(data.get("message") or "")
    hint = data.get("hint")
    return f"{message}: {hint}" if hint else message


def readable(notice: dict) -> dict | None:
    """A notice as a person reads it, or None for the ones only tools need. ``kind`` and
    ``args`` let the page translate the known ones; ``text`` is the English sentence."""
    kind, data = notice.get("noticeType", ""), notice.get("data") or {}
    level = "info"
    if kind == N.ACTIVE_TUNNEL:
        args = {"region": region(data.get("region")) or "?", "protocol": data.get("protocol") or "?"}
        text = f"connected to a server in {args['region']} via {args['protocol']}"
    elif kind == N.CLIENT_REGION:
        args = {"region": region(data.get("region")) or "?"}
        text = f"your region: {args['region']}"
    elif kind == N.HOMEPAGE:
        args, text = {"url": data.get("url", "")}, f"home page: {data.get('url', '')}"
    elif kind == N.CLIENT_UPGRADE_AVAILABLE:
        args, text = {"version": str(data.get("version", ""))}, f"a new version is available: {data.get('version')}"
    elif kind == N.REMOTE_SERVER_LIST_DOWNLOADED:
        args = {"imported": data.get("imported", 0)}
        text = f"server list updated: {args['imported']} new servers"
    elif kind in (N.ALERT, N.ERROR, N.UPSTREAM_PROXY_ERROR):
        level = "error" if kind == N.ERROR else "alert"
        args, text = {}, sentence(data) or str(data)
    elif kind == N.INFO and data.get("message") not in (UPGRADE_PROGRESS, "server connection failed"):
        args, text = {}, sentence(data)
    else:
        return None
    return {"time": notice.get("timestamp", ""), "kind": kind, "level": level, "text": text, "args": args}


class LiveState:
    def __init__(self, control: ClientControl, *, open_url: Callable[[str], Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._control = control
        self._open_url = open_url
        self._clock = clock
        self.changed: Callable[[], None] = lambda: None
        self.client_region = ""
        self.homepages: list[str] = []
        self._home_opened = False
        self._was_wanted = True
        self.regions: tuple[str, ...] = ()
        self.upgrade: dict[str, Any] = {}
        self.remote_list: dict[str, Any] = {}
        self.notices: deque[dict] = deque(maxlen=NOTICES_KEPT)
        self.samples: deque[tuple[float, float]] = deque(maxlen=SAMPLES_KEPT)
        self._last_bytes: tuple[float, int, int] | None = None
        self._status = ("starting", self._clock())
        self._had_tunnel = False
        for notice in control.recent_notices():
            self.on_notice(notice, quiet=True)
        control.subscribe(self.on_notice)

    # -- from notices -----------------------------------------------------------------

    def on_notice(self, notice: dict, quiet: bool = False) -> None:
        kind, data = notice.get("noticeType", ""), notice.get("data") or {}
        if kind == N.ACTIVE_TUNNEL:
            self._had_tunnel = True
        elif kind == N.CLIENT_REGION:
            self.client_region = region(data.get("region"))
        elif kind == N.AVAILABLE_EGRESS_REGIONS:
            self.regions = tuple(str(r) for r in data.get("regions") or ())
        elif kind == N.HOMEPAGE:
            self._homepage(str(data.get("url", "")), quiet)
        elif kind == N.CLIENT_UPGRADE_AVAILABLE:
            version = str(data.get("version", ""))
            if self.upgrade.get("version") != version or self.upgrade.get("state") == "failed":
                self.upgrade = {"version": version, "state": "available"}
        elif kind == N.CLIENT_UPGRADE_DOWNLOADED:
            self.upgrade = {**self.upgrade, "state": "downloaded", "version": str(data.get("version", ""))}
        elif kind == N.REMOTE_SERVER_LIST_DOWNLOADED:
            self.remote_list = {"state": "done", "imported": data.get("imported", 0), "time": notice.get("timestamp")}
        elif kind in (N.INFO, N.ALERT):
            self._progress(str(data.get("message", "")), data)
        entry = readable(notice)
        if entry is not None:
            self.notices.append(entry)
        if not quiet:
            self.changed()

    def _homepage(self, url: str, quiet: bool) -> None:
        if url and url not in self.homepages:
            self.homepages.append(url)
        if url and not self._home_opened and not quiet:
            self._home_opened = True  # once per connect, as Psiphon's apps do
            if self._open_url is not None:
                self._open_url(url)

    def _progress(self, message: str, data: dict) -> None:
        if message == USER_CONNECT:
            self._had_tunnel, self._home_opened = False, False  # a new connect by the person
        elif message == REMOTE_LIST_STARTED:
            self.remote_list = {"state": "downloading"}
        elif message == REMOTE_LIST_FAILED:
            self.remote_list = {"state": "failed", "error": str(data.get("error", ""))}
        elif message == UPGRADE_PROGRESS:
            self.upgrade = {**self.upgrade, "state": "downloading", "bytes": data.get("bytes", 0),
                            "total": data.get("total")}
        elif message == UPGRADE_FAILED:
            self.upgrade = {**self.upgrade, "state": "failed", "error": str(data.get("error", ""))}
        elif self.upgrade.get("state") == "downloaded" and data.get("version") == self.upgrade.get("version"):
            self.upgrade = {**self.upgrade, "message": message, "command": data.get("command")}

    # -- sampled ----------------------------------------------------------------------

    def tick(self) -> None:
        """Once a second: a rate sample (bytes/s up and down) for the graph."""
        snap = self._control.snapshot()
        now = self._clock()
        if self._last_bytes is not None:
            then, up, down = self._last_bytes
            span = max(now - then, 1e-3)
            self.samples.append((max(snap.bytes_up - up, 0) / span, max(snap.bytes_down - down, 0) / span))
        self._last_bytes = (now, snap.bytes_up, snap.bytes_down)
        self.changed()

    def _state_name(self, wanted: bool, connected: bool) -> str:
        if not wanted:
            return "disconnected"
        if connected:
            return "connected"
        return "reconnecting" if self._had_tunnel else "connecting"

    def status(self) -> dict[str, Any]:
        snap = self._control.snapshot()
        if snap.wanted and not self._was_wanted:
            self._had_tunnel, self._home_opened = False, False  # a new connect by the person
        self._was_wanted = snap.wanted
        name = self._state_name(snap.wanted, snap.connected)
        if name != self._status[0]:
            self._status = (name, self._clock())
        fields = asdict(snap)
        fields.pop("extra", None)
        fields["available_regions"] = sorted(set(snap.available_regions) | set(self.regions))
        return {**fields, "state": name, "since": self._status[1], "now": self._clock(),
                "client_region": self.client_region, "homepages": list(self.homepages),
                "upgrade": dict(self.upgrade), "remote_list": dict(self.remote_list),
                "notices": list(self.notices), "rates": [list(s) for s in self.samples],
                "settings": asdict(self._control.settings())}
