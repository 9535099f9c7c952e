"""Glue between the controller's notices and the upgrade and feedback channels.

Wire once, after the controller exists::

    hook = UpgradeHook(controller)
    controller.notices.subscribe(hook.on_notice)   # reacts to ClientUpgradeAvailable
    ...
    await hook.close()                             # on shutdown

``on_notice`` runs inside ``Notices.emit`` (synchronously), so it only schedules the
work: at most one upgrade task per offered version at a time; a failed attempt is tried
again the next time the version is offered (each new tunnel's handshake offers it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from . import notices as N
from .feedback.send import upload_leftovers
from .ports import OutboundClient
from .upgrade.check import check_and_download_upgrade

UpgradeRunner = Callable[[OutboundClient, str], Awaitable[Any]]


async def _default_runner(controller: OutboundClient, version: str):
    return await check_and_download_upgrade(controller, version)


class UpgradeHook:
    def __init__(self, controller: OutboundClient, runner: UpgradeRunner = _default_runner) -> None:
        self.controller = controller
        self.runner = runner
        self.tasks: dict[str, asyncio.Task] = {}
        self.results: dict[str, Any] = {}

    def on_notice(self, notice: dict) -> None:
        if notice.get("noticeType") != N.CLIENT_UPGRADE_AVAILABLE:
            return
        version = str((notice.get("data") or {}).get("version", ""))
        if not version or (version in self.results and getattr(self.results[version], "status", "") != "failed"):
            return
        running = self.tasks.get(version)
        if running is not None and not running.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # emitted outside the event loop: nothing to schedule on
        task = loop.create_task(self._run(version))
        self.tasks[version] = task

    async def _run(self, version: str) -> None:
        self.results[version] = await self.runner(self.controller, version)

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


async def upload_feedback_leftovers(controller: OutboundClient) -> Any:
    """Upload feedback earlier runs could not send (call once a tunnel is up, or at start)."""
    return await upload_leftovers(controller)
