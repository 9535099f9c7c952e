"""A live status view on a terminal (rich), fed by the same notices tools read.

Shown when stdout is a terminal and ``--notices`` was not given: state, server,
protocol, region, bytes through the tunnel and the local proxy addresses. A person reads
sentences here, never JSON: alerts and errors appear in the panel as their message (and
hint), the JSON notices go to a file (``notices_path``), and a fatal start error is the
last frame's state.
"""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from . import notices as N
from .ports import StatusSource


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


UNKNOWN = "unknown"
MESSAGES_SHOWN = 3


def sentence(data: dict) -> str:
    """An alert's words: its message, then its hint (what to do), if any."""
    message = str(data.get("message") or "")
    hint = data.get("hint")
    return f"{message}: {hint}" if hint else message


def whole_device_line(state) -> str:
    """--whole-device: on or off, and what it carried and refused."""
    if not state.active:
        return "off"
    lan = f", LAN {state.share_lan}" if state.share_lan else ""
    return (f"on (IPv6 {state.ipv6}{lan}): {state.tcp_connections} connections, "
            f"{state.udp_datagrams} datagrams; refused {state.tcp_refused} connections, "
            f"dropped {state.udp_dropped} datagrams")


class TerminalView:
    def __init__(self, controller: StatusSource, console: Console | None = None,
                 notices_path: str | None = None) -> None:
        self._controller = controller
        self._console = console or Console()
        self.notices_path = notices_path
        self.state = "starting"
        self.server = "-"
        self.protocol = "-"
        self.region = "-"
        self.client_region = UNKNOWN
        self.messages: list[str] = []
        controller.notices.subscribe(self.on_notice)

    @property
    def last_message(self) -> str:
        return self.messages[-1] if self.messages else ""

    def on_notice(self, notice: dict) -> None:
        kind, data = notice["noticeType"], notice["data"]
        if kind == N.CONNECTING_SERVER:
            self.state = "connecting"
        elif kind == N.ACTIVE_TUNNEL:
            self.state, self.server = "connected", data.get("diagnosticID") or "-"
            self.protocol, self.region = data.get("protocol") or "-", data.get("region") or UNKNOWN
        elif kind == N.TUNNELS and data.get("count") == 0:
            self.state = "reconnecting"
        elif kind == N.CLIENT_REGION:
            self.client_region = data.get("region") or UNKNOWN
        elif kind in (N.ALERT, N.ERROR, N.UPSTREAM_PROXY_ERROR):
            self.messages = [*self.messages, sentence(data)][-MESSAGES_SHOWN:]

    def failed(self, message: str) -> None:
        """The client could not go on (a port in use, a bad entry): the final state."""
        self.state = f"stopped: {message}"
        self.messages = [m for m in self.messages if m != message]  # said once, as the state

    def stopped(self) -> None:
        if not self.state.startswith("stopped"):
            self.state = "stopped"

    def render(self) -> Table:
        c = self._controller
        table = Table(title="onehop", show_header=False, expand=False)
        table.add_column(style="bold")
        table.add_column()
        # Values carry text from the network (regions, errors): Text, never rich markup,
        # so a server cannot draw links or styles here.
        table.add_row("state", Text(self.state))
        table.add_row("server", Text(f"{self.server}  region {self.region}  via {self.protocol}"))
        table.add_row("your region", Text(self.client_region))
        table.add_row("traffic", f"up {_size(c.byte_counter.up)}   down {_size(c.byte_counter.down)}")
        host = c.config.listen_interface
        table.add_row("SOCKS proxy", f"{host}:{c.socks_port}" if c.socks_port else "-")
        table.add_row("HTTP proxy", f"{host}:{c.http_port}" if c.http_port else "-")
        whole = getattr(c, "whole_device", None)
        if whole is not None:
            table.add_row("whole device", Text(whole_device_line(whole.state)))
        for i, message in enumerate(self.messages):
            table.add_row("messages" if i == 0 else "", Text(message))
        if self.notices_path:
            table.add_row("notices (JSON)", self.notices_path)
        return table

    async def run(self) -> None:
        """Until cancelled; the last frame (drawn on the way out) stays on the terminal."""
        with Live(self.render(), console=self._console, refresh_per_second=4) as live:
            try:
                while True:
                    await asyncio.sleep(0.5)
                    live.update(self.render())
            finally:
                live.update(self.render(), refresh=True)
