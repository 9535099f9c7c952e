"""Opening a client's TCP forward: resolve on the server, apply the policy, dial, relay.

The destination is resolved here, the policy is applied to the resolved address, and
that address is dialled (never re-resolved), so DNS cannot be used to slip past the
bogon rule. Failures become SSH channel-open failures the client can map to SOCKS codes.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket

from asyncssh.misc import ChannelOpenError

from ..tunnel.relay import ByteCounter, CountingForwarder
from .policy import ForwardPolicy

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
    return infos[0][4][0]


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


async def open_forward(policy: ForwardPolicy, host: str, port: int, *,
                       counter: ByteCounter, dial_timeout: float = 10.0) -> CountingForwarder:
    """The channel-side forwarder of a new relay to (host, port), or ChannelOpenError."""
    if not policy.check_port(port).allowed:
        raise prohibited()
    ip = await resolve(host)
    if not policy.check(ip, port).allowed:
        raise prohibited()
    loop = asyncio.get_running_loop()
    try:
        _, peer = await asyncio.wait_for(loop.create_connection(
            lambda: CountingForwarder(counter=counter, direction="down"), ip, port), dial_timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        raise _dial_error(exc) from None
    return CountingForwarder(peer, counter=counter, direction="up")
