"""The narrow interface between the web UI and a running client (typed values only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import DEFAULT_PROTOCOLS


@dataclass(frozen=True)
class Settings:
    """What a person may change while the client runs (Psiphon key names in the file)."""

    egress_region: str = ""                       # EgressRegion ("" = best performance)
    protocols: tuple[str, ...] = DEFAULT_PROTOCOLS  # LimitTunnelProtocols
    upstream_proxy: str = ""                      # UpstreamProxyURL
    split_tunnel_own_region: bool = False         # SplitTunnelOwnRegion
    split_tunnel_regions: tuple[str, ...] = ()    # SplitTunnelRegions
    whole_device: bool = False                    # WholeDevice


@dataclass(frozen=True)
class WholeDeviceSupport:
    available: bool
    reason: str = ""   # why not, in words, when unavailable


@dataclass(frozen=True)
class Snapshot:
    """The client as it is now; ``live.LiveState`` adds what the notices told."""

    wanted: bool                     # False after a disconnect
    connected: bool
    server_region: str
    protocol: str
    bytes_up: int
    bytes_down: int
    socks_proxy: str                 # "127.0.0.1:1080", "" while not listening
    http_proxy: str
    whole_device_active: bool
    whole_device: WholeDeviceSupport
    available_regions: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FeedbackResult:
    upload_id: str
    uploaded: bool   # False: saved, and uploaded later (the client retries)


class ClientControl(Protocol):
    """What the UI may see and do. Implemented by ``control.ControllerControl``."""

    def subscribe(self, callback: Callable[[dict], None]) -> None: ...   # every notice
    def recent_notices(self) -> list[dict]: ...
    def snapshot(self) -> Snapshot: ...
    def settings(self) -> Settings: ...
    def connect(self) -> None: ...
    def disconnect(self) -> None: ...
    async def apply(self, settings: Settings) -> Settings: ...         # validates, persists, applies
    def feedback_preview(self, message: str, email: str, diagnostics: bool) -> dict: ...
    async def send_feedback(self, message: str, email: str, diagnostics: bool) -> FeedbackResult: ...
