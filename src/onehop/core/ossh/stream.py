"""The part of OSSH both roles share: obfuscating SSH until the first NEWKEYS.

Read direction: decrypt with the peer's RC4 stream, drop extra identification lines,
re-frame KEX packets, and once the peer's NEWKEYS has been read pass raw bytes
through. Write direction: obfuscate our identification line and KEX packets (adding
random padding), and once our NEWKEYS is out pass bytes through. Subclasses supply the
preamble (client seed message; server prefix reply and line padding).
"""

from __future__ import annotations

from collections import deque
from enum import Enum

from ...errors import LocalProtocolError, OSSHReason, ProtocolError, RemoteProtocolError, UsageReason
from ..prng import SeededPRNG
from ..sansio import NEED_DATA, Pending
from .cipher import RC4Stream
from .constants import SSH_MAX_LINE_LENGTH, SSH_PACKET_PREFIX_LENGTH
from .events import DataReceived, EOFReceived, Event
from .sshframing import is_newkeys, pad_packet, parse_packet_header, reframe_packet


class ReadState(Enum):
    PREAMBLE = "preamble"            # role-specific: server seed message / client prefix skip
    IDENTIFICATION_LINES = "lines"
    KEX_PACKETS = "packets"
    PASSTHROUGH = "passthrough"
    ERROR = "error"


class WriteState(Enum):
    PREAMBLE = "preamble"            # nothing written yet
    IDENTIFICATION_LINE = "line"
    KEX_PACKETS = "packets"
    PASSTHROUGH = "passthrough"


class ObfuscatedStream:
    """Shared OSSH machinery; use ``ClientObfuscator`` or ``ServerObfuscator``."""

    def __init__(self, keyword: str) -> None:
        self._keyword = keyword.encode("utf-8")
        self._events: deque[Event] = deque()
        self._inbox = bytearray()      # wire bytes not yet handled
        self._raw = bytearray()        # obfuscated bytes of the KEX phase not yet parsed ...
        self._plain = bytearray()      # ... and their decryption, offset-aligned with _raw
        self._read_cipher: RC4Stream | None = None
        self._write_cipher: RC4Stream | None = None
        self._padding_prng: SeededPRNG | None = None
        self._legacy_padding = False
        self._read_state = ReadState.PREAMBLE
        self._write_state = WriteState.PREAMBLE
        self._write_buffer = bytearray()
        self._writes: list[bytes] = []
        self._eof_received = False
        self._eof_reported = False
        self._error: ProtocolError | None = None

    # -- public sans-IO surface -------------------------------------------------------

    @property
    def read_passthrough(self) -> bool:
        """True once the peer's NEWKEYS was read: wire bytes now go up unchanged."""
        return self._read_state is ReadState.PASSTHROUGH and not self._inbox

    @property
    def write_passthrough(self) -> bool:
        """True once our NEWKEYS was written: SSH bytes now go down unchanged."""
        return self._write_state is WriteState.PASSTHROUGH

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the wire (downstream)."""
        if self._eof_received:
            raise LocalProtocolError(UsageReason.DATA_AFTER_EOF, "receive_data after receive_eof")
        if data:
            self._inbox += data

    def receive_eof(self) -> None:
        self._eof_received = True

    def next_event(self) -> Event | Pending:
        """The next event, or ``NEED_DATA`` when more input is needed. Raises RemoteProtocolError."""
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            raise self._error
        try:
            self._process_input()
        except ProtocolError as exc:
            self._read_state = ReadState.ERROR
            self._error = exc
            raise
        if self._events:
            return self._events.popleft()
        if self._eof_received and not self._eof_reported:
            self._eof_reported = True
            return EOFReceived()
        return NEED_DATA

    def send(self, data: bytes) -> None:
        """Take SSH bytes (upstream) to be obfuscated and written to the wire."""
        if self._write_state is WriteState.PASSTHROUGH:
            if data:
                self._writes.append(bytes(data))
            return
        if self._write_state is WriteState.PREAMBLE:
            self._writes.extend(self._make_preamble_writes())
            self._write_state = WriteState.IDENTIFICATION_LINE
        self._write_buffer += data
        self._transform_writes()

    def writes_to_send(self) -> list[bytes]:
        """Pending wire writes, keeping the boundaries Psiphon uses (prefix alone first)."""
        writes, self._writes = self._writes, []
        return writes

    def data_to_send(self) -> bytes:
        return b"".join(self.writes_to_send())

    # -- hooks for the roles ----------------------------------------------------------

    def _read_preamble(self) -> bool:
        """Consume preamble bytes from ``self._inbox``; True if progress was made."""
        raise NotImplementedError

    def _make_preamble_writes(self) -> list[bytes]:
        raise NotImplementedError

    # -- read path --------------------------------------------------------------------

    def _process_input(self) -> None:
        while self._read_state is ReadState.PREAMBLE and self._inbox:
            if not self._read_preamble():
                return
        if self._read_state is ReadState.PASSTHROUGH:
            if self._inbox:
                self._events.append(DataReceived(bytes(self._inbox)))
                self._inbox.clear()
            return
        if self._read_state in (ReadState.IDENTIFICATION_LINES, ReadState.KEX_PACKETS):
            self._decrypt_inbox()
            upstream = bytearray()
            while self._parse_one(upstream):
                pass
            if upstream:
                self._events.append(DataReceived(bytes(upstream)))

    def _decrypt_inbox(self) -> None:
        # Everything before the peer's NEWKEYS is obfuscated, so we decrypt eagerly and
        # keep the raw bytes: whatever follows NEWKEYS is handed up from _raw unchanged.
        if self._inbox:
            assert self._read_cipher is not None
            chunk = bytes(self._inbox)
            self._inbox.clear()
            self._raw += chunk
            self._plain += self._read_cipher.apply(chunk)

    def _consume(self, count: int) -> bytes:
        taken = bytes(self._plain[:count])
        del self._plain[:count]
        del self._raw[:count]
        return taken

    def _parse_one(self, upstream: bytearray) -> bool:
        if self._read_state is ReadState.IDENTIFICATION_LINES:
            return self._parse_line(upstream)
        if self._read_state is ReadState.KEX_PACKETS:
            return self._parse_packet(upstream)
        return False

    def _parse_line(self, upstream: bytearray) -> bool:
        end = self._plain.find(b"\r\n", 0, SSH_MAX_LINE_LENGTH)
        if end < 0:
            if len(self._plain) >= SSH_MAX_LINE_LENGTH:
                raise RemoteProtocolError(OSSHReason.BAD_IDENTIFICATION_LINE, "no CRLF within 1024 bytes")
            return False
        line = self._consume(end + 2)
        if line.startswith(b"SSH-"):
            self._legacy_padding = b"Ganymed" in line
            upstream += line
            self._read_state = ReadState.KEX_PACKETS
        return True  # other lines are RFC 4253 section 4.2 padding: dropped

    def _parse_packet(self, upstream: bytearray) -> bool:
        if len(self._plain) < SSH_PACKET_PREFIX_LENGTH:
            return False
        header = parse_packet_header(self._plain)
        if header is None:
            raise RemoteProtocolError(OSSHReason.BAD_KEX_PACKET, "invalid packet or padding length")
        if len(self._plain) < header.total_length:
            return False
        packet = self._consume(header.total_length)
        upstream += reframe_packet(packet, header)
        if is_newkeys(packet, header):
            self._read_state = ReadState.PASSTHROUGH
            upstream += self._raw
            self._raw.clear()
            self._plain.clear()
            return False
        return True

    # -- write path -------------------------------------------------------------------

    def _transform_writes(self) -> None:
        out = bytearray()
        buf = self._write_buffer
        if self._write_state is WriteState.IDENTIFICATION_LINE:
            end = buf.find(b"\r\n")
            if end >= 0:
                out += buf[:end + 2]
                del buf[:end + 2]
                self._write_state = WriteState.KEX_PACKETS
        while self._write_state is WriteState.KEX_PACKETS and len(buf) >= SSH_PACKET_PREFIX_LENGTH:
            header = parse_packet_header(buf)
            if header is None:
                raise LocalProtocolError(OSSHReason.BAD_KEX_PACKET, "the SSH layer wrote an invalid packet")
            if len(buf) < header.total_length:
                break
            packet = bytes(buf[:header.total_length])
            del buf[:header.total_length]
            assert self._padding_prng is not None
            out += pad_packet(packet, header, self._padding_prng, self._legacy_padding)
            if is_newkeys(packet, header):
                self._write_state = WriteState.PASSTHROUGH
        if out:
            assert self._write_cipher is not None
            self._writes.append(self._write_cipher.apply(bytes(out)))
        if self._write_state is WriteState.PASSTHROUGH and buf:
            self._writes.append(bytes(buf))
            buf.clear()
