"""udpgw framing (badvpn's UDP gateway protocol), sans-IO.

UDP travels through the tunnel as messages on one ``direct-tcpip`` channel to the magic
udpgw address. Each message is::

    size     uint16 LITTLE-endian, counts every byte after these two
    flags    1 byte: 0x01 keepalive, 0x02 rebind, 0x04 DNS, 0x08 IPv6
    conn_id  uint16 LITTLE-endian
    address  4 bytes (IPv4), or 16 when the IPv6 flag is set
    port     uint16 BIG-endian
    payload  the UDP datagram, at most ``MAX_PAYLOAD`` bytes

A keepalive is just ``size`` (3), ``flags`` and ``conn_id``. ``UdpgwParser`` turns a
byte stream into ``PacketReceived`` and ``KeepaliveReceived`` events, the ``encode_*``
functions do the reverse. ``next_event`` speaks ``core.sansio``'s dialect: an event or
``NEED_DATA``; bad peer input raises ``RemoteProtocolError``, and after one the stream is
unusable (there is no resynchronisation in this protocol).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from ..errors import LocalProtocolError, RemoteProtocolError, UdpgwReason
from .sansio import NEED_DATA, Pending, drain

FLAG_KEEPALIVE = 0x01
FLAG_REBIND = 0x02
FLAG_DNS = 0x04
FLAG_IPV6 = 0x08

MAX_PAYLOAD = 32768
#: size field + flags + conn_id + IPv6 address + port
MAX_PREAMBLE = 2 + 1 + 2 + 16 + 2
MAX_MESSAGE = MAX_PREAMBLE + MAX_PAYLOAD
MAX_SIZE_FIELD = MAX_MESSAGE - 2
KEEPALIVE_SIZE = 3
_MIN_SIZE_IPV4 = 1 + 2 + 4 + 2
_MIN_SIZE_IPV6 = 1 + 2 + 16 + 2


@dataclass(frozen=True)
class PacketReceived:
    """One UDP datagram for (or from) ``address``:``port`` on flow ``conn_id``."""

    conn_id: int
    flags: int
    address: bytes
    port: int
    payload: bytes

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_address(self.address))

    @property
    def forward_dns(self) -> bool:
        return bool(self.flags & FLAG_DNS)

    @property
    def discard_existing(self) -> bool:
        """The rebind flag: drop any flow that already has this conn_id."""
        return bool(self.flags & FLAG_REBIND)

    @property
    def ipv6(self) -> bool:
        return bool(self.flags & FLAG_IPV6)


@dataclass(frozen=True)
class KeepaliveReceived:
    conn_id: int


UdpgwEvent = PacketReceived | KeepaliveReceived


def address_bytes(ip: str) -> bytes:
    """The 4 or 16 address bytes of an IP literal (LocalProtocolError if it is not one)."""
    try:
        return ipaddress.ip_address(ip).packed
    except ValueError:
        raise LocalProtocolError(UdpgwReason.BAD_ADDRESS, repr(ip)) from None


def encode_packet(conn_id: int, address: bytes, port: int, payload: bytes, flags: int = 0) -> bytes:
    """One message; the IPv6 flag is added when ``address`` has 16 bytes."""
    if len(address) == 16:
        flags |= FLAG_IPV6
    elif len(address) != 4 or flags & FLAG_IPV6:
        raise LocalProtocolError(UdpgwReason.BAD_ADDRESS, f"{len(address)}-byte address, flags {flags:#x}")
    if not 0 <= conn_id <= 0xFFFF or not 0 <= port <= 0xFFFF or not 0 <= flags <= 0xFF:
        raise LocalProtocolError(UdpgwReason.BAD_FIELD, f"conn_id {conn_id}, port {port}, flags {flags}")
    if flags & FLAG_KEEPALIVE:
        raise LocalProtocolError(UdpgwReason.BAD_FIELD, "use encode_keepalive for keepalives")
    if len(payload) > MAX_PAYLOAD:
        raise LocalProtocolError(UdpgwReason.PAYLOAD_TOO_LARGE, f"{len(payload)} > {MAX_PAYLOAD}")
    size = 1 + 2 + len(address) + 2 + len(payload)
    return struct.pack("<HBH", size, flags, conn_id) + address + struct.pack(">H", port) + bytes(payload)


def encode_keepalive(conn_id: int = 0) -> bytes:
    if not 0 <= conn_id <= 0xFFFF:
        raise LocalProtocolError(UdpgwReason.BAD_FIELD, f"conn_id {conn_id}")
    return struct.pack("<HBH", KEEPALIVE_SIZE, FLAG_KEEPALIVE, conn_id)


def _decode_message(body: bytes) -> UdpgwEvent:
    """A message without its size field (``len(body)`` is the size)."""
    flags = body[0]
    conn_id = body[1] | body[2] << 8
    if flags & FLAG_KEEPALIVE:
        return KeepaliveReceived(conn_id)
    address_length = 16 if flags & FLAG_IPV6 else 4
    if len(body) < 3 + address_length + 2:
        raise RemoteProtocolError(UdpgwReason.BAD_SIZE, f"{len(body)} bytes is too short for flags {flags:#x}")
    port_at = 3 + address_length
    port = body[port_at] << 8 | body[port_at + 1]
    return PacketReceived(conn_id, flags, bytes(body[3:port_at]), port, bytes(body[port_at + 2:]))


class UdpgwParser:
    """Incremental parser: ``receive_data`` bytes, then ``next_event()`` until ``NEED_DATA``."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._error: RemoteProtocolError | None = None

    def receive_data(self, data: bytes) -> None:
        if self._error is None:
            self._buffer += data

    def next_event(self) -> UdpgwEvent | Pending:
        """The next complete message, ``NEED_DATA`` if more bytes are needed."""
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if len(buffer) < 2:
            return NEED_DATA
        size = buffer[0] | buffer[1] << 8
        if size > MAX_SIZE_FIELD or size < KEEPALIVE_SIZE:
            self._error = RemoteProtocolError(UdpgwReason.BAD_SIZE, f"size field {size}")
            raise self._error
        if len(buffer) < 2 + size:
            return NEED_DATA
        body = bytes(buffer[2:2 + size])
        del buffer[:2 + size]
        try:
            return _decode_message(body)
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def events(self) -> list[UdpgwEvent]:
        """Every complete message received so far."""
        return list(drain(self))

    @property
    def buffered(self) -> int:
        return len(self._buffer)
