"""Opening a client's TCP forward: resolve on the server, apply the policy, dial.

The destination is resolved here, the policy is applied to the resolved address, and
that address is dialled (never re-resolved), so DNS cannot be used to slip past the
bogon rule. Failures become SSH channel-open failures the client can map to SOCKS codes.
The relay that follows lives in ``portforwards``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Callable

from asyncssh.misc import ChannelOpenError

OPEN_ADMINISTRATIVELY_PROHIBITED = 1
OPEN_CONNECT_FAILED = 2
PROHIBITED_TEXT = "administratively prohibited"
MAX_HOSTNAME_LENGTH = 255


def prohibited() -> ChannelOpenError:
    return ChannelOpenError(OPEN_ADMINISTRATIVELY_PROHIBITED, PROHIBITED_TEXT)


def _valid_hostname(host: str) -> bool:
    return 0 < len(host) <= MAX_HOSTNAME_LENGTH and all(33 <= ord(c) < 127 for c in host)


async def resolve(host: str) -> str:
    """An IP address for ``host`` (IPv4 preferred); ChannelOpenError when unresolvable."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if not _valid_hostname(host):
        raise prohibited()
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise ChannelOpenError(OPEN_CONNECT_FAILED, "name resolution failed") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(infos[0][4][0])


def _dial_error(exc: BaseException) -> ChannelOpenError:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ChannelOpenError(OPEN_CONNECT_FAILED, "connection timed out")
    if isinstance(exc, ConnectionRefusedError):
        return ChannelOpenError(OPEN_CONNECT_FAILED, "connection refused")
    code = getattr(exc, "errno", None)
    if code == errno.ENETUNREACH:
        return ChannelOpenError(OPEN_CONNECT_FAILED, "network unreachable")
    if code == errno.EHOSTUNREACH:
        return ChannelOpenError(OPEN_CONNECT_FAILED, "host unreachable")
    return ChannelOpenError(OPEN_CONNECT_FAILED, "connection failed")


async def dial(ip: str, port: int, protocol_factory: Callable[[], asyncio.BaseProtocol],
               timeout: float | None) -> asyncio.BaseProtocol:
    """Connect to ``ip``:``port``; the connected protocol, or ChannelOpenError."""
    loop = asyncio.get_running_loop()
    try:
        _, protocol = await asyncio.wait_for(loop.create_connection(protocol_factory, ip, port), timeout)
    except (TimeoutError, OSError) as exc:
        raise _dial_error(exc) from None
    return protocol
