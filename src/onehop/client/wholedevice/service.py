"""Whole-device mode for one client run: listeners up, rules in, counters, rules out.

``WholeDevice.start`` checks the machine (root, nft, the LAN interface), marks the
client's own sockets, starts the transparent TCP listener and the UDP relay, then
installs the rules (replacing a stale table left by a crashed run in the same
transaction), so that from that moment nothing leaves the machine except through the
tunnel. ``close`` removes
the rules again. The controller holds the object as ``controller.whole_device``;
``state`` is what notices, the terminal view and a UI show.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import asdict, dataclass

from ...net import dial
from ..notices import WHOLE_DEVICE
from . import rules
from .rules import RuleSpec
from .transparent import listen
from .udp_relay import UdpRelay

log = logging.getLogger(__name__)

STATS_INTERVAL = 60.0
MAX_REFUSALS_SAID = 20


@dataclass
class WholeDeviceState:
    active: bool = False
    share_lan: str = ""
    ipv6: str = "tunnelled"       # or "blocked"
    tcp_connections: int = 0      # forwarded through the tunnel
    tcp_refused: int = 0          # could not be forwarded (reset)
    udp_datagrams: int = 0        # caught by the rules
    udp_replies: int = 0          # answers delivered back
    udp_dropped: int = 0          # lost (no tunnel in time, queue full, too big)

    def summary(self) -> dict:
        return asdict(self)


class WholeDevice:
    def __init__(self, controller, share_lan: str = "") -> None:
        self.controller = controller
        self.notices = controller.notices
        self.share_lan = share_lan
        self.ipv6 = rules.ipv6_available()
        self.state = WholeDeviceState(share_lan=share_lan)
        self._servers: list[asyncio.AbstractServer] = []
        self._udp: UdpRelay | None = None
        self._tasks: set[asyncio.Task] = set()
        self._tcp_port = 0
        self._refusals_said = 0

    async def start(self) -> None:
        rules.preflight(self.share_lan)
        # A table left by a crashed run keeps the machine closed until ``install`` replaces
        # it in one transaction: there is no moment without a kill switch.
        stale = rules.table_present()
        dial.set_socket_mark(rules.OWN_MARK)
        try:
            self._servers, self._tcp_port = await listen(self)
            self._udp = UdpRelay(self)
            udp_port = self._udp.listen()
            rules.install(RuleSpec(self._tcp_port, udp_port, self.share_lan, self.ipv6))
        except BaseException:
            await self._stop_listeners()
            raise
        if stale:
            self.notices.info("removed the whole-device rules a previous run left behind",
                              table=f"{rules.FAMILY} {rules.TABLE}")
        self.state.active = True
        self.state.ipv6 = "tunnelled" if self.ipv6 else "blocked"
        self.track(asyncio.get_running_loop().create_task(self._report_loop()))
        self.notices.emit(WHOLE_DEVICE, active=True, table=f"{rules.FAMILY} {rules.TABLE}",
                          shareLAN=self.share_lan or None, ipv6=self.state.ipv6,
                          tcpPort=self._tcp_port, udpPort=udp_port)

    async def close(self) -> None:
        """Remove the rules first (the machine is never left without a way out), then stop."""
        was_active = self.state.active
        self.state.active = False
        try:
            if was_active:
                rules.remove()
        finally:
            dial.set_socket_mark(0)
            await self._stop_listeners()
        if was_active:
            self.notices.emit(WHOLE_DEVICE, active=False, **self._counts())

    async def _stop_listeners(self) -> None:
        for server in self._servers:
            server.close()
        if self._udp is not None:
            self._udp.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers = []

    # -- for the listeners ---------------------------------------------------------------

    def track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def is_own_listener(self, host: str, port: int) -> bool:
        if port != self._tcp_port:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return address.is_loopback or address.is_unspecified

    def refused_connection(self, why: str, *, destination: str = "", quiet: bool = False) -> None:
        self.state.tcp_refused += 1
        if quiet or self._refusals_said >= MAX_REFUSALS_SAID:
            return
        self._refusals_said += 1
        self.notices.info("whole-device: a connection was not forwarded", reason=why,
                          destination=destination or None)

    # -- reporting -----------------------------------------------------------------------

    def _counts(self) -> dict:
        s = self.state
        counts = {"tcpConnections": s.tcp_connections, "tcpRefused": s.tcp_refused,
                  "udpDatagrams": s.udp_datagrams, "udpReplies": s.udp_replies, "udpDropped": s.udp_dropped}
        try:
            counts["killSwitchDropped"] = rules.dropped_count()
        except rules.WholeDeviceError:
            pass
        return counts

    async def _report_loop(self) -> None:
        last = None
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            counts = await asyncio.to_thread(self._counts)
            if counts != last:
                self.notices.emit(WHOLE_DEVICE, active=True, **counts)
                last = counts


def cleanup() -> bool:
    """``--whole-device --cleanup``: remove what a crashed run left; True if there was a table."""
    rules.preflight()
    return rules.remove()
