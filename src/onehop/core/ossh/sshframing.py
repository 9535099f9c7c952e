"""SSH framing during key exchange: identification lines and binary packets.

OSSH obfuscates only the SSH identification line and the plaintext key-exchange
packets. To find where obfuscation ends (after the first SSH_MSG_NEWKEYS) both ends
parse the RFC 4253 framing; the writer also varies packet padding, and the reader
re-frames what it receives with RFC-conformant padding for stock SSH libraries.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..prng import SeededPRNG
from .constants import (MAX_PADDING, SERVER_LINE_PADDING_MAX_LINE, SSH_MAX_PACKET_LENGTH,
                        SSH_MAX_PADDING_LENGTH, SSH_MSG_NEWKEYS, SSH_PACKET_PREFIX_LENGTH,
                        SSH_PADDING_MULTIPLE)

_REFRAME_BLOCK = 8
_MIN_PADDING = 4


@dataclass(frozen=True)
class PacketHeader:
    packet_length: int
    padding_length: int

    @property
    def total_length(self) -> int:
        """Bytes on the wire: uint32 length field plus ``packet_length`` (no MAC yet)."""
        return 4 + self.packet_length

    @property
    def payload_length(self) -> int:
        return self.packet_length - self.padding_length - 1


def parse_packet_header(prefix: bytes | bytearray) -> PacketHeader | None:
    """Parse the 5-byte packet prefix; None when it is not a sane KEX packet."""
    packet_length, padding_length = struct.unpack(">IB", prefix[:SSH_PACKET_PREFIX_LENGTH])
    if packet_length < 1 or packet_length > SSH_MAX_PACKET_LENGTH:
        return None
    if padding_length >= packet_length:
        return None
    return PacketHeader(packet_length, padding_length)


def is_newkeys(packet: bytes, header: PacketHeader) -> bool:
    return header.payload_length > 0 and packet[SSH_PACKET_PREFIX_LENGTH] == SSH_MSG_NEWKEYS


def server_line_padding(prng: SeededPRNG) -> bytes:
    """Extra lines before the server's identification line: NULs + CRLF, <= 512 per line.

    Total length is uniform in [2, 8192] and every line (CRLF included) has at least
    two bytes, exactly as Psiphon's server draws it from the padding PRNG.
    """
    remaining = prng.intn(MAX_PADDING - 2 + 1) + 2
    lines = []
    while remaining > 0:
        length = min(remaining, SERVER_LINE_PADDING_MAX_LINE)
        if 0 < remaining - length < 2:
            length -= 2 - (remaining - length)
        lines.append(b"\x00" * (length - 2) + b"\r\n")
        remaining -= length
    return b"".join(lines)


def pad_packet(packet: bytes, header: PacketHeader, prng: SeededPRNG, legacy: bool) -> bytes:
    """Add random extra padding to one plaintext packet (writer side).

    Normal mode draws 0..(255 - padding) extra bytes, deliberately breaking block
    alignment; legacy mode (peers identifying as Ganymed) keeps 16-byte multiples.
    """
    room = SSH_MAX_PADDING_LENGTH - header.padding_length
    if legacy:
        choices = room // SSH_PADDING_MULTIPLE
        extra = prng.intn(choices) * SSH_PADDING_MULTIPLE if choices > 0 else 0
    else:
        extra = prng.intn(room + 1) if room > 0 else 0
    new_header = struct.pack(">IB", header.packet_length + extra, header.padding_length + extra)
    return new_header + packet[SSH_PACKET_PREFIX_LENGTH:] + prng.read(extra)


def reframe_packet(packet: bytes, header: PacketHeader) -> bytes:
    """Rebuild a received plaintext packet with 8-byte-aligned padding of >= 4 bytes.

    Only the payload enters SSH's exchange hash, so changing the padding is safe; stock
    libraries (asyncssh, paramiko) reject the non-aligned padding OSSH peers send.
    """
    start = SSH_PACKET_PREFIX_LENGTH
    payload = packet[start:start + header.payload_length]
    padding = _REFRAME_BLOCK - (SSH_PACKET_PREFIX_LENGTH + len(payload)) % _REFRAME_BLOCK
    if padding < _MIN_PADDING:
        padding += _REFRAME_BLOCK
    return struct.pack(">IB", 1 + len(payload) + padding, padding) + payload + b"\x00" * padding
