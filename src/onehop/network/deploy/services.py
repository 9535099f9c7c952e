"""Running servers on a host: systemd when the host has it, else nohup with a pidfile.

Both answer the same four calls over an open management connection: ``prepare`` (once
per deploy), ``running``, ``restart`` and ``stop`` (one server). A server that moves
from nohup to systemd (the host gained systemd) has its nohup process stopped first.
"""

from __future__ import annotations

from ..errors import DeployError
from ..remote import RemoteHost, quote
from .layout import UNIT_PATH, Layout, nohup_running_script, nohup_start_script, nohup_stop_script, systemd_unit


class Nohup:
    name = "nohup"
    note = ("the host has no systemd: servers run under nohup setsid with a pidfile (ROOT/run/<id>.pid); "
            "they do not restart after a crash or a reboot: run deploy again")

    def __init__(self, remote: RemoteHost, layout: Layout) -> None:
        self.remote, self.layout = remote, layout

    async def prepare(self) -> None:
        pass

    async def running(self, server_id: str) -> bool:
        result = await self.remote.run(nohup_running_script(self.layout, server_id), check=False)
        return result.exit_status == 0

    async def stop(self, server_id: str) -> None:
        await self.remote.run(nohup_stop_script(self.layout, server_id), what=f"stopping {server_id}")

    async def restart(self, server_id: str) -> None:
        await self.stop(server_id)
        await self.remote.run(nohup_start_script(self.layout, server_id), what=f"starting {server_id}")


class Systemd:
    name = "systemd"
    note = ""

    def __init__(self, remote: RemoteHost, layout: Layout) -> None:
        self.remote, self.layout = remote, layout

    async def prepare(self) -> None:
        if await self.remote.write_file(UNIT_PATH, systemd_unit(self.layout).encode("utf-8"), 0o644):
            await self.remote.run("systemctl daemon-reload", what="systemctl daemon-reload")

    async def running(self, server_id: str) -> bool:
        result = await self.remote.run(f"systemctl is-active --quiet {quote(self.layout.unit(server_id))}",
                                       check=False)
        return result.exit_status == 0

    async def stop(self, server_id: str) -> None:
        unit = quote(self.layout.unit(server_id))
        await self.remote.run(f"systemctl disable --now --quiet {unit}", check=False)
        await self.remote.run(nohup_stop_script(self.layout, server_id), what=f"stopping {server_id}")

    async def restart(self, server_id: str) -> None:
        unit = quote(self.layout.unit(server_id))
        await self.remote.run(nohup_stop_script(self.layout, server_id), what=f"stopping {server_id}")
        await self.remote.run(f"systemctl enable --quiet {unit} && systemctl restart {unit}",
                              what=f"restarting {self.layout.unit(server_id)}")
        status = await self.remote.run(f"sleep 1; systemctl is-active --quiet {unit}", check=False)
        if status.exit_status != 0:
            journal = await self.remote.run(f"journalctl -u {unit} -n 20 --no-pager", check=False)
            raise DeployError(f"{self.layout.unit(server_id)} did not stay up:\n{journal.text.strip()}")


def service_manager(kind: str, remote: RemoteHost, layout: Layout) -> Nohup | Systemd:
    return Systemd(remote, layout) if kind == "systemd" else Nohup(remote, layout)
