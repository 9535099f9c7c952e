"""A live status view on a terminal (rich), fed by the same notices tools read.

Shown when stdout is a terminal and ``--notices`` was not given: state, server,
protocol, region, bytes through the tunnel and the local proxy addresses.
"""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.live import Live
from rich.table import Table

from . import notices as N


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


class TerminalView:
    def __init__(self, controller, console: Console | None = None) -> None:
        self._controller = controller
        self._console = console or Console()
        self.state = "starting"
        self.server = "-"
        self.protocol = "-"
        self.region = "-"
        self.client_region = "-"
        self.last_message = ""
        controller.notices.subscribe(self.on_notice)

    def on_notice(self, notice: dict) -> None:
        kind, data = notice["noticeType"], notice["data"]
        if kind == N.CONNECTING_SERVER:
            self.state = "connecting"
        elif kind == N.ACTIVE_TUNNEL:
            self.state, self.server = "connected", data.get("diagnosticID", "-")
            self.protocol, self.region = data.get("protocol", "-"), data.get("region") or "-"
        elif kind == N.TUNNELS and data.get("count") == 0:
            self.state = "reconnecting"
        elif kind == N.CLIENT_REGION:
            self.client_region = data.get("region", "-")
        elif kind in (N.ALERT, N.ERROR, N.UPSTREAM_PROXY_ERROR):
            self.last_message = data.get("message", "")

    def render(self) -> Table:
        c = self._controller
        table = Table(title="onehop", show_header=False, expand=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("state", self.state)
        table.add_row("server", f"{self.server}  region {self.region}  via {self.protocol}")
        table.add_row("your region", self.client_region)
        table.add_row("traffic", f"up {_size(c.byte_counter.up)}   down {_size(c.byte_counter.down)}")
        host = c.config.listen_interface
        table.add_row("SOCKS proxy", f"{host}:{c.socks_port}" if c.socks_port else "-")
        table.add_row("HTTP proxy", f"{host}:{c.http_port}" if c.http_port else "-")
        if self.last_message:
            table.add_row("last alert", self.last_message)
        return table

    async def run(self) -> None:
        with Live(self.render(), console=self._console, refresh_per_second=4) as live:
            while True:
                await asyncio.sleep(0.5)
                live.update(self.render())
