"""``ControllerControl``: the ``ClientControl`` Protocol over a running client's controller.

The one place where the UI meets the client: the controller's public operations
(``connect``, ``disconnect``, ``reconfigure``, ``whole_device``), the settings file and
the feedback path (``onehop.client.feedback.send``: the same redaction, encryption and upload
as ``onehop feedback send``, through the tunnel when one is up).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ...errors import ConfigError, ConfigProblem, OnehopError
from ..candidates import available_regions
from ..feedback.send import preview_from, send_feedback_from
from ..feedback.upload import UploadPolicy
from ..ports import ControlledClient, WholeDeviceMode
from .port import FeedbackResult, Settings, Snapshot, WholeDeviceSupport
from .settings import SettingsFile, applied, settings_of

FEEDBACK_ATTEMPTS = 2  # the UI answers within a minute; a package not uploaded yet stays queued


def probe_whole_device() -> WholeDeviceSupport:
    """Whole-device mode works here (Linux, root, nft and ip), or why not."""
    try:  # local: a build may leave whole-device mode out, and the UI then says so
        from ..wholedevice.rules import preflight
    except ImportError:
        return WholeDeviceSupport(False, "not part of this build")
    try:
        preflight("")
    except OnehopError as exc:
        problems = getattr(exc, "problems", None)
        return WholeDeviceSupport(False, "; ".join(p.message for p in problems) if problems else str(exc))
    return WholeDeviceSupport(True)


async def _start_whole_device(controller: ControlledClient, share_lan: str) -> WholeDeviceMode:
    # local: loaded when the user turns the mode on
    from ..wholedevice import WholeDevice
    service = WholeDevice(controller, share_lan)
    await service.start()
    return service


class ControllerControl:
    def __init__(self, controller: ControlledClient, settings_file: SettingsFile, *,
                 whole_device_support: Callable[[], WholeDeviceSupport] = probe_whole_device,
                 start_whole_device: Callable[[ControlledClient, str],
                                              Awaitable[WholeDeviceMode]] = _start_whole_device) -> None:
        self._controller = controller
        self._file = settings_file
        self._support = whole_device_support()
        self._start_whole_device = start_whole_device

    def subscribe(self, callback: Callable[[dict], None]) -> None:
        self._controller.notices.subscribe(callback)

    def recent_notices(self) -> list[dict]:
        return list(self._controller.notices.recent)

    def snapshot(self) -> Snapshot:
        c = self._controller
        active = c.active
        host = c.config.listen_interface
        whole = c.whole_device
        try:
            regions = tuple(available_regions(c.store.entries()))
        except Exception:  # a store that cannot be read shows no regions, never breaks the page
            regions = ()
        return Snapshot(
            wanted=c.wanted, connected=active is not None,
            server_region=(active.entry.region or "") if active is not None else "",
            protocol=active.protocol if active is not None else "",
            bytes_up=c.byte_counter.up, bytes_down=c.byte_counter.down,
            socks_proxy=f"{host}:{c.socks_port}" if c.socks_port else "",
            http_proxy=f"{host}:{c.http_port}" if c.http_port else "",
            whole_device_active=bool(whole is not None and whole.state.active),
            whole_device=self._support, available_regions=regions)

    def settings(self) -> Settings:
        return settings_of(self._controller.config)

    def connect(self) -> None:
        self._controller.connect()

    def disconnect(self) -> None:
        self._controller.disconnect()

    async def apply(self, settings: Settings) -> Settings:
        c = self._controller
        config = applied(c.config, settings)  # ConfigError names each bad setting
        if settings.whole_device and not c.config.whole_device and not self._support.available:
            raise ConfigError([ConfigProblem("whole_device", self._support.reason or "not available here")])
        self._file.save(settings)
        before = settings_of(c.config)
        if settings.whole_device != before.whole_device:
            await self._switch_whole_device(settings.whole_device, c.config.share_lan)
        tunnel_settings = ("egress_region", "protocols", "upstream_proxy", "split_tunnel_own_region",
                           "split_tunnel_regions")
        changed = any(getattr(before, name) != getattr(settings, name) for name in tunnel_settings)
        c.reconfigure(config, reconnect=changed)  # a new tunnel, chosen with the new settings
        return settings_of(c.config)

    async def _switch_whole_device(self, on: bool, share_lan: str) -> None:
        c = self._controller
        if on and c.whole_device is None:
            c.whole_device = await self._start_whole_device(c, share_lan)
        elif not on and c.whole_device is not None:
            service, c.whole_device = c.whole_device, None
            await service.close()

    def feedback_preview(self, message: str, email: str, diagnostics: bool) -> dict:
        return preview_from(self._controller, message, email=email, include_diagnostics=diagnostics)

    async def send_feedback(self, message: str, email: str, diagnostics: bool) -> FeedbackResult:
        result = await send_feedback_from(self._controller, message, email=email,
                                          include_diagnostics=diagnostics,
                                          policy=UploadPolicy(max_attempts=FEEDBACK_ATTEMPTS))
        return FeedbackResult(result.upload_id, result.uploaded)
