"""Server side of SOCKS5 (RFC 1928), plus SOCKS4/4a CONNECT, for our local proxy.

Sans-IO: ``Socks5Server`` takes the client's bytes through ``receive_data`` /
``receive_eof``, reports what the client asked for through ``next_event`` and queues
our answers for ``data_to_send``. It never touches a socket.

Conversation (SOCKS5)::

    client: 05 n methods...          -> we queue 05 00 (no auth), or 05 FF and GreetingRefused
    client: 05 01 00 atyp addr port  -> ConnectRequested(host, port, address_type)
    caller: send(ConnectReply(...))  -> reply queued; SUCCEEDED moves to RELAY, others CLOSE

A first byte of 04 selects SOCKS4 (IPv4 address) or SOCKS4a (``0.0.0.x`` plus a domain),
answered with the 8-byte SOCKS4 reply; the events and ``ConnectReply`` are the same.
Requests we do not serve (BIND, UDP ASSOCIATE, unknown address types, unusable domain
names) are answered for the caller: the refusal is queued and ``RequestRefused`` says so.
Malformed input raises ``RemoteProtocolError``; nothing is queued then, the caller closes.

Bytes the client sent past its request (optimistic data) are kept for the caller:
``trailing_data()`` hands them over exactly once.

The address helpers (``format_ip``, ``encode_address``, ``decode_domain``) are shared with
``onehop.core.upstreamproxy`` and ``onehop.core.httpproxy``.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from onehop.core.sansio import NEED_DATA, PAUSED, ByteStream, Pending
from onehop.errors import LocalProtocolError, RemoteProtocolError, SOCKSReason

__all__ = [
    "NEED_DATA", "PAUSED", "Pending", "AddressType", "ReplyCode", "State",
    "ConnectRequested", "GreetingRefused", "RequestRefused", "ConnectReply",
    "Socks5Server", "format_ip", "encode_address", "decode_domain",
]

SOCKS4_VERSION = 0x04
SOCKS5_VERSION = 0x05
METHOD_NO_AUTH = 0x00
METHOD_USERNAME_PASSWORD = 0x02
METHOD_NONE_ACCEPTABLE = 0xFF
CMD_CONNECT = 0x01
SOCKS4_GRANTED = 0x5A
SOCKS4_REJECTED = 0x5B
MAX_DOMAIN_LENGTH = 255
MAX_SOCKS4_FIELD = 255  # user id and SOCKS4a domain, each without its NUL




class AddressType(enum.IntEnum):
    """SOCKS5 ATYP values (SOCKS4 uses IPV4, SOCKS4a DOMAIN)."""

    IPV4 = 0x01
    DOMAIN = 0x03
    IPV6 = 0x04


class ReplyCode(enum.IntEnum):
    """SOCKS5 REP values, RFC 1928 section 6."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


_ADDRESS_TYPES = frozenset(AddressType)


class State(enum.Enum):
    GREETING = "greeting"
    REQUEST = "request"
    AWAITING_REPLY = "awaiting reply"
    RELAY = "relay"
    CLOSED = "closed"
    ERROR = "error"


@dataclass(frozen=True)
class ConnectRequested:
    """The client asked to CONNECT to ``host``:``port`` (``version`` 5, or 4 for SOCKS4/4a)."""

    host: str
    port: int
    address_type: AddressType
    version: int = SOCKS5_VERSION


@dataclass(frozen=True)
class GreetingRefused:
    """The client offered no method we accept; 05 FF is queued and the state is CLOSED."""

    offered: tuple[int, ...]


@dataclass(frozen=True)
class RequestRefused:
    """A request we do not serve; the refusal ``reply`` is queued and the state is CLOSED."""

    reply: ReplyCode
    detail: str


@dataclass(frozen=True)
class ConnectReply:
    """What the caller sends once it knows whether the target connection worked."""

    reply: ReplyCode
    bound_host: str = "0.0.0.0"
    bound_port: int = 0


# -- address helpers -------------------------------------------------------------------

def format_ip(packed: bytes) -> str:
    """Text form of a 4- or 16-byte address; IPv6 as RFC 5952 (mixed form for ::ffff:v4)."""
    if len(packed) == 4:
        return str(ipaddress.IPv4Address(packed))
    address = ipaddress.IPv6Address(packed)
    if address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return address.compressed


def encode_address(host: str) -> bytes:
    """ATYP + address bytes for ``host`` (an IP literal, else a domain name)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raw = host.encode("utf-8", errors="strict") if host.isprintable() else b""
        if not 0 < len(raw) <= MAX_DOMAIN_LENGTH:
            raise LocalProtocolError(SOCKSReason.BAD_ADDRESS,
                                     f"cannot encode host {host!r} as a SOCKS domain") from None
        return bytes([AddressType.DOMAIN, len(raw)]) + raw
    if address.version == 4:
        return bytes([AddressType.IPV4]) + address.packed
    return bytes([AddressType.IPV6]) + address.packed


def decode_domain(raw: bytes) -> str | None:
    """A domain name from the wire, or None if empty, not UTF-8, or not printable (controls, NUL)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or not text.isprintable():
        return None
    return text


def _port(raw: bytes | bytearray) -> int:
    return int.from_bytes(raw, "big")


# -- the server ------------------------------------------------------------------------

class Socks5Server(ByteStream):
    """One client connection to our SOCKS proxy, from greeting to relay."""

    def __init__(self) -> None:
        super().__init__()
        self._state = State.GREETING
        self._version = SOCKS5_VERSION

    @property
    def state(self) -> State:
        return self._state

    def trailing_data(self) -> bytes:
        """Client bytes past its request; returned once, then cleared."""
        if self._state in (State.GREETING, State.REQUEST, State.ERROR):
            raise LocalProtocolError(SOCKSReason.NO_TRAILING_DATA, f"no request parsed yet (state {self._state.name})")
        out = bytes(self._buffer)
        self._buffer.clear()
        return out

    def next_event(self) -> ConnectRequested | GreetingRefused | RequestRefused | Pending:
        if self._state is State.ERROR:
            raise LocalProtocolError(SOCKSReason.ERROR_STATE, "the connection already failed")
        if self._state not in (State.GREETING, State.REQUEST):
            return PAUSED
        try:
            event = self._parse()
            if event is NEED_DATA and self._eof:
                raise RemoteProtocolError(
                    SOCKSReason.EOF, f"client closed during the {self._state.value} after {len(self._buffer)} byte(s)")
        except RemoteProtocolError:
            self._state = State.ERROR
            raise
        return event

    def send(self, reply: ConnectReply) -> None:
        """Queue the reply to the CONNECT request; SUCCEEDED enters RELAY, others CLOSED."""
        if self._state is not State.AWAITING_REPLY:
            raise LocalProtocolError(SOCKSReason.UNEXPECTED_REPLY, f"cannot send a reply in state {self._state.name}")
        code = _reply_code(reply.reply)
        if not 0 <= reply.bound_port <= 0xFFFF:
            raise LocalProtocolError(SOCKSReason.BAD_PORT, f"bound port {reply.bound_port} out of range")
        if self._version == SOCKS4_VERSION:
            self._outgoing += _socks4_reply(code, reply.bound_host, reply.bound_port)
        else:
            self._outgoing += _socks5_reply(code, reply.bound_host, reply.bound_port)
        self._state = State.RELAY if code is ReplyCode.SUCCEEDED else State.CLOSED

    # -- parsing -----------------------------------------------------------------------

    def _parse(self) -> ConnectRequested | GreetingRefused | RequestRefused | Pending:
        if self._state is State.GREETING:
            if not self._buffer:
                return NEED_DATA
            if self._buffer[0] == SOCKS4_VERSION:
                self._version = SOCKS4_VERSION
                self._state = State.REQUEST
            else:
                refused = self._parse_greeting()
                if refused is not None:
                    return refused
        if self._state is not State.REQUEST:
            return NEED_DATA
        if self._version == SOCKS4_VERSION:
            return self._parse_socks4_request()
        return self._parse_socks5_request()

    def _parse_greeting(self) -> GreetingRefused | Pending | None:
        buf = self._buffer
        if buf[0] != SOCKS5_VERSION:
            raise RemoteProtocolError(SOCKSReason.BAD_VERSION,
                                      f"first byte 0x{buf[0]:02x} is neither SOCKS4 nor SOCKS5")
        if len(buf) < 2 or len(buf) < 2 + buf[1]:
            return NEED_DATA
        offered = tuple(buf[2:2 + buf[1]])
        del buf[:2 + buf[1]]
        if METHOD_NO_AUTH not in offered:
            self._outgoing += bytes([SOCKS5_VERSION, METHOD_NONE_ACCEPTABLE])
            self._state = State.CLOSED
            return GreetingRefused(offered)
        self._outgoing += bytes([SOCKS5_VERSION, METHOD_NO_AUTH])
        self._state = State.REQUEST
        return None

    def _parse_socks5_request(self) -> ConnectRequested | RequestRefused | Pending:
        buf = self._buffer
        if len(buf) < 4:
            return NEED_DATA
        if buf[0] != SOCKS5_VERSION:
            raise RemoteProtocolError(SOCKSReason.BAD_VERSION, f"request version 0x{buf[0]:02x}, expected 0x05")
        if buf[1] != CMD_CONNECT:
            return self._refuse(ReplyCode.COMMAND_NOT_SUPPORTED, f"command 0x{buf[1]:02x} not supported")
        if buf[3] not in _ADDRESS_TYPES:
            return self._refuse(ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED, f"address type 0x{buf[3]:02x}")
        atyp = AddressType(buf[3])
        if atyp is AddressType.DOMAIN:
            if len(buf) < 5:
                return NEED_DATA
            start, length = 5, buf[4]
        else:
            start, length = 4, 4 if atyp is AddressType.IPV4 else 16
        end = start + length
        if len(buf) < end + 2:
            return NEED_DATA
        raw, port = bytes(buf[start:end]), _port(buf[end:end + 2])
        del buf[:end + 2]
        return self._connect(atyp, raw, port)

    def _parse_socks4_request(self) -> ConnectRequested | RequestRefused | Pending:
        buf = self._buffer
        if len(buf) < 8:
            return NEED_DATA
        if buf[1] != CMD_CONNECT:
            return self._refuse(ReplyCode.COMMAND_NOT_SUPPORTED, f"SOCKS4 command 0x{buf[1]:02x} not supported")
        user_end = _find_nul(buf, 8, "user id")
        if user_end is None:
            return NEED_DATA
        port, ip = _port(buf[2:4]), bytes(buf[4:8])
        if ip[:3] != b"\x00\x00\x00" or ip[3] == 0:
            del buf[:user_end + 1]
            return self._connect(AddressType.IPV4, ip, port)
        domain_end = _find_nul(buf, user_end + 1, "SOCKS4a domain")
        if domain_end is None:
            return NEED_DATA
        raw = bytes(buf[user_end + 1:domain_end])
        del buf[:domain_end + 1]
        return self._connect(AddressType.DOMAIN, raw, port)

    def _connect(self, atyp: AddressType, raw: bytes, port: int) -> ConnectRequested | RequestRefused:
        if atyp is AddressType.DOMAIN:
            host = decode_domain(raw)
            if host is None:
                return self._refuse(ReplyCode.HOST_UNREACHABLE, f"unusable domain name {raw!r}")
        else:
            host = format_ip(raw)
        self._state = State.AWAITING_REPLY
        return ConnectRequested(host, port, atyp, self._version)

    def _refuse(self, code: ReplyCode, detail: str) -> RequestRefused:
        if self._version == SOCKS4_VERSION:
            self._outgoing += _socks4_reply(code, "0.0.0.0", 0)
        else:
            self._outgoing += _socks5_reply(code, "0.0.0.0", 0)
        self._state = State.CLOSED
        return RequestRefused(code, detail)


def _find_nul(buf: bytearray, start: int, what: str) -> int | None:
    """Index of the NUL ending a SOCKS4 string at ``start``; None if not yet received."""
    end = buf.find(0, start, start + MAX_SOCKS4_FIELD + 1)
    if end < 0 and len(buf) > start + MAX_SOCKS4_FIELD:
        raise RemoteProtocolError(SOCKSReason.FIELD_TOO_LONG, f"{what} longer than {MAX_SOCKS4_FIELD} bytes")
    return end if end >= 0 else None


def _reply_code(value: int) -> ReplyCode:
    try:
        return ReplyCode(value)
    except ValueError:
        raise LocalProtocolError(SOCKSReason.BAD_REPLY_CODE, f"{value!r} is not a SOCKS5 reply code") from None


def _socks5_reply(code: ReplyCode, host: str, port: int) -> bytes:
    return bytes([SOCKS5_VERSION, code, 0x00]) + encode_address(host) + port.to_bytes(2, "big")


def _socks4_reply(code: ReplyCode, host: str, port: int) -> bytes:
    """VN=0, CD=0x5A granted / 0x5B rejected, port, IPv4 (zeros when not IPv4)."""
    try:
        ip = ipaddress.IPv4Address(host).packed
    except ValueError:
        ip = b"\x00" * 4
    status = SOCKS4_GRANTED if code is ReplyCode.SUCCEEDED else SOCKS4_REJECTED
    return bytes([0x00, status]) + port.to_bytes(2, "big") + ip
