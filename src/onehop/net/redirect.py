"""Connections the kernel redirected to us (iptables REDIRECT): where they were going,
and how to end one as a refused connection ends. Used by the whole-device client's
transparent listener and by the lab's middlebox.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct

SO_ORIGINAL_DST = 80          # linux/netfilter_ipv4.h
IP6T_SO_ORIGINAL_DST = 80     # linux/netfilter_ipv6/ip6_tables.h
SOL_IPV6 = 41


def original_destination(sock: socket.socket) -> tuple[str, int]:
    """(ip, port) the application connected to before the redirect; OSError if none."""
    if sock.family == socket.AF_INET6:
        raw = sock.getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST, 28)
        port, = struct.unpack_from("!H", raw, 2)
        ip = socket.inet_ntop(socket.AF_INET6, raw[8:24])
        mapped = ipaddress.IPv6Address(ip).ipv4_mapped
        return (str(mapped) if mapped else ip), port
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, address = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(address), port


def abort_with_reset(transport: asyncio.BaseTransport | None) -> None:
    """Close with a RST, as a refused connection would end."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()  # type: ignore[attr-defined]
