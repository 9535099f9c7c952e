"""The TPROXY UDP relay: every datagram the rules caught, through udpgw over the tunnel.

TPROXY delivers datagrams to one socket per family without changing them; the
original destination comes with each one (``IP_ORIGDSTADDR`` / ``IPV6_ORIGDSTADDR``).
Each (application address, original destination) pair is one udpgw flow, so a UDP
echo or a game's datagrams reach exactly where they were sent; DNS too, except to a
private resolver (the LAN's, which the server cannot reach): that is flagged for the
server's own resolver (``to_server_resolver``). A
reply is sent from the original destination's address (a transparent socket bound to
it, marked so the rules let it pass), so the application sees the answer it expects.

UDP semantics hold: while no tunnel is up datagrams wait in a small queue and are
dropped if none comes (the application retries, as on any lossy network); flows idle
for ``FLOW_IDLE`` seconds are forgotten.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
import time


from ...core.udpgw import MAX_PAYLOAD
from ..udpgw_flows import UdpgwFlows
from .rules import OWN_MARK

log = logging.getLogger(__name__)

IP_TRANSPARENT = 19
IP_RECVORIGDSTADDR = 20       # IP_ORIGDSTADDR
IPV6_TRANSPARENT = 75
IPV6_RECVORIGDSTADDR = 74     # IPV6_ORIGDSTADDR
SOL_IPV6 = 41
SO_MARK = 36
FLOW_IDLE = 60.0
MAX_FLOWS = 1024
MAX_QUEUED = 256
ANCILLARY = 64
BATCH = 64   # datagrams read per wake-up


def _transparent_socket(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, OWN_MARK)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(SOL_IPV6, IPV6_TRANSPARENT, 1)
        else:
            sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def to_server_resolver(destination: tuple[str, int]) -> bool:
    """DNS to a resolver only this network can reach (the LAN router, a private address):
    the udpgw DNS flag, so the server's own resolver answers, as Psiphon's tun2socks
    does; DNS to a public resolver goes where the application sent it."""
    if destination[1] != 53:
        return False
    try:
        return not ipaddress.ip_address(destination[0]).is_global
    except ValueError:
        return True


def _original_destination(ancdata) -> tuple[str, int] | None:
    for level, kind, data in ancdata:
        if level == socket.SOL_IP and kind == IP_RECVORIGDSTADDR and len(data) >= 8:
            port, = struct.unpack_from("!H", data, 2)
            return socket.inet_ntoa(data[4:8]), port
        if level == SOL_IPV6 and kind == IPV6_RECVORIGDSTADDR and len(data) >= 24:
            port, = struct.unpack_from("!H", data, 2)
            return socket.inet_ntop(socket.AF_INET6, data[8:24]), port
    return None


class UdpRelay:
    def __init__(self, service, *, clock=time.monotonic) -> None:
        self._service = service
        self._sockets: list[socket.socket] = []
        self._flows = UdpgwFlows(service.controller, name="whole-device UDP", flow_idle=FLOW_IDLE,
                                 max_flows=MAX_FLOWS, max_queued=MAX_QUEUED, dropped=self._count_dropped,
                                 clock=clock)
        self.port = 0

    # -- listening ----------------------------------------------------------------------

    def listen(self, port: int = 0) -> int:
        """Bind the TPROXY sockets (0.0.0.0 and, if enabled, [::]) on one port."""
        loop = asyncio.get_running_loop()
        v4 = _transparent_socket(socket.AF_INET)
        v4.setsockopt(socket.SOL_IP, IP_RECVORIGDSTADDR, 1)
        v4.bind(("0.0.0.0", port))
        self.port = v4.getsockname()[1]
        self._sockets.append(v4)
        if self._service.ipv6:
            try:
                v6 = _transparent_socket(socket.AF_INET6)
                v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                v6.setsockopt(SOL_IPV6, IPV6_RECVORIGDSTADDR, 1)
                v6.bind(("::", self.port))
                self._sockets.append(v6)
            except OSError as exc:
                log.info("no IPv6 UDP relay (%s): IPv6 is blocked", exc)
                self._service.ipv6 = False
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), self._readable, sock)
        return self.port

    def _readable(self, sock: socket.socket) -> None:
        for _ in range(BATCH):
            try:
                data, ancdata, _, source = sock.recvmsg(MAX_PAYLOAD + 1, socket.CMSG_SPACE(ANCILLARY))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error for an earlier datagram
            destination = _original_destination(ancdata)
            if destination is None or not data or len(data) > MAX_PAYLOAD:
                self._service.state.udp_dropped += 1
                continue
            self._datagram(data, source[:2], destination, sock.family)

    # -- forwarding ---------------------------------------------------------------------

    def _datagram(self, data: bytes, source: tuple, destination: tuple, family: int) -> None:
        self._service.state.udp_datagrams += 1
        key = (source, destination)
        self._flows.send(key, data, lambda client: client.open_flow(
            destination[0], destination[1], lambda reply: self._reply(reply, key, family),
            dns=to_server_resolver(destination)))

    def _count_dropped(self, count: int) -> None:
        self._service.state.udp_dropped += count

    def _reply(self, payload: bytes, key: tuple, family: int) -> None:
        """Send ``payload`` to the application from the address it wrote to."""
        source, destination = key
        try:
            sock = _transparent_socket(family)
            try:
                sock.bind(destination)
                sock.sendto(payload, source)
            finally:
                sock.close()
        except OSError as exc:
            log.debug("whole-device UDP: reply to %s lost: %s", source, exc)
            return
        self._service.state.udp_replies += 1

    def close(self) -> None:
        self._flows.close()
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()
