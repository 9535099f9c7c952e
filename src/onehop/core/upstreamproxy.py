"""Client side of the upstream proxy chain (``--upstream-proxy URL``).

When the user must go through their own proxy, every downstream dial first runs one of
these sans-IO handshakes on the fresh TCP connection to that proxy:

- ``Socks5ClientHandshake``: RFC 1928, with RFC 1929 username/password when given;
- ``Socks4aClientHandshake``: SOCKS4 for IPv4 targets, SOCKS4a for names (user id only);
- ``HttpConnectClientHandshake``: ``CONNECT host:port`` with optional Basic auth.

Each is built with ``(target_host, target_port, credentials)``; its first message is ready
in ``data_to_send()`` at once. Feed the proxy's answer to ``receive_data`` / ``receive_eof``;
``next_event()`` returns ``ProxyConnected``, ``NEED_DATA``, or raises
``RemoteProtocolError`` whose ``reason`` says what went wrong for the user
(``proxy_auth_required``, ``proxy_auth_rejected``, ``proxy_connection_refused``,
``proxy_bad_reply``, ...). Bytes the proxy relayed right after its answer (the target
speaking first, e.g. an SSH banner) are kept for ``trailing_data()``.

``parse_proxy_url`` turns the user's URL into a ``ProxySpec`` or a ``ConfigError`` keyed
``upstream_proxy``; its messages never repeat the password.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from onehop.core.sansio import ByteStream
from onehop.core.socks5 import (
    NEED_DATA, PAUSED, AddressType, Pending, ReplyCode, decode_domain, encode_address, format_ip,
)
from onehop.errors import ConfigError, ConfigProblem, LocalProtocolError, RemoteProtocolError, UpstreamProxyReason

__all__ = [
    "NEED_DATA", "PAUSED", "SCHEMES", "ProxyCredentials", "ProxySpec", "ProxyConnected",
    "Socks5ClientHandshake", "Socks4aClientHandshake", "HttpConnectClientHandshake",
    "ClientHandshake", "handshake_for", "parse_proxy_url", "basic_authorization",
]

SCHEMES = ("http", "socks5", "socks4a")
MAX_RESPONSE_HEAD = 64 * 1024
_SOCKS5_REASONS: dict[int, tuple[UpstreamProxyReason, str]] = {
    ReplyCode.GENERAL_FAILURE: (UpstreamProxyReason.GENERAL_FAILURE, "general SOCKS server failure"),
    ReplyCode.NOT_ALLOWED: (UpstreamProxyReason.NOT_ALLOWED, "connection not allowed by ruleset"),
    ReplyCode.NETWORK_UNREACHABLE: (UpstreamProxyReason.NETWORK_UNREACHABLE, "network unreachable"),
    ReplyCode.HOST_UNREACHABLE: (UpstreamProxyReason.HOST_UNREACHABLE, "host unreachable"),
    ReplyCode.CONNECTION_REFUSED: (UpstreamProxyReason.CONNECTION_REFUSED, "connection refused by the target"),
    ReplyCode.TTL_EXPIRED: (UpstreamProxyReason.TTL_EXPIRED, "TTL expired"),
    ReplyCode.COMMAND_NOT_SUPPORTED: (UpstreamProxyReason.COMMAND_NOT_SUPPORTED, "CONNECT not supported"),
    ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED: (UpstreamProxyReason.ADDRESS_TYPE_NOT_SUPPORTED,
                                           "address type not supported"),
}
_SOCKS4_REASONS: dict[int, tuple[UpstreamProxyReason, str]] = {
    0x5B: (UpstreamProxyReason.CONNECT_FAILED, "request rejected or failed"),
    0x5C: (UpstreamProxyReason.AUTH_REJECTED, "the proxy could not reach our identd"),
    0x5D: (UpstreamProxyReason.AUTH_REJECTED, "the proxy's identd check rejected the user id"),
}
_STATUS_LINE = re.compile(rb"HTTP/1\.[0-9] ([0-9]{3})(?: ([^\r\n]*))?")
_HEAD_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True)
class ProxyCredentials:
    """Username and password for the upstream proxy (the password never appears in repr)."""

    username: str
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class ProxySpec:
    """A parsed ``--upstream-proxy`` URL."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def credentials(self) -> ProxyCredentials | None:
        if self.username is None:
            return None
        return ProxyCredentials(self.username, self.password or "")


@dataclass(frozen=True)
class ProxyConnected:
    """The proxy now relays to the target; SOCKS5 reports the address it bound."""

    bound_host: str | None = None
    bound_port: int | None = None


def _printable(data: bytes | str, limit: int = 120) -> str:
    text = data.decode("latin-1") if isinstance(data, (bytes, bytearray)) else data
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])


def _bad_reply(kind: str, detail: str) -> RemoteProtocolError:
    return RemoteProtocolError(UpstreamProxyReason.BAD_REPLY, f"{kind} proxy: {detail}")


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError(UpstreamProxyReason.BAD_TEXT,
                                 "host or credentials are not encodable as UTF-8") from None


def _check_target(host: str, port: int) -> None:
    if not host or not isinstance(port, int) or not 0 < port <= 0xFFFF:
        raise LocalProtocolError(UpstreamProxyReason.BAD_TARGET, f"cannot ask a proxy for {host!r} port {port!r}")


# -- the shared driver -----------------------------------------------------------------

class _ClientHandshake(ByteStream):
    """Buffers, EOF and the error state; subclasses implement ``_step``."""

    KIND = ""

    def __init__(self, target_host: str, target_port: int, credentials: ProxyCredentials | None) -> None:
        _check_target(target_host, target_port)
        self.target_host = target_host
        self.target_port = target_port
        self.credentials = credentials
        super().__init__()
        self._connected = False
        self._failed = False

    @property
    def connected(self) -> bool:
        return self._connected

    def trailing_data(self) -> bytes:
        """Bytes the proxy sent after its final answer; returned once, then cleared."""
        if not self._connected:
            raise LocalProtocolError(UpstreamProxyReason.NOT_CONNECTED, "the proxy handshake has not finished")
        out = bytes(self._buffer)
        self._buffer.clear()
        return out

    def next_event(self) -> ProxyConnected | Pending:
        if self._failed:
            raise LocalProtocolError(UpstreamProxyReason.ERROR_STATE, "the proxy handshake already failed")
        if self._connected:
            return PAUSED
        try:
            event = self._step()
            if event is NEED_DATA and self._eof:
                raise RemoteProtocolError(
                    UpstreamProxyReason.CLOSED, f"the {self.KIND} proxy closed the connection during the handshake")
        except RemoteProtocolError:
            self._failed = True
            raise
        if isinstance(event, ProxyConnected):
            self._connected = True
        return event

    def _step(self) -> ProxyConnected | Pending:
        raise NotImplementedError

    def _take(self, n: int) -> bytes:
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out


# -- SOCKS5 ----------------------------------------------------------------------------

class Socks5ClientHandshake(_ClientHandshake):
    """RFC 1928 CONNECT; offers username/password (RFC 1929) only when credentials are given."""

    KIND = "SOCKS5"

    def __init__(self, target_host: str, target_port: int, credentials: ProxyCredentials | None = None) -> None:
        super().__init__(target_host, target_port, credentials)
        self._request = b"\x05\x01\x00" + encode_address(target_host) + target_port.to_bytes(2, "big")
        self._auth = _socks5_auth_message(credentials) if credentials else None
        self._phase = "method"
        self._outgoing += b"\x05\x02\x00\x02" if credentials else b"\x05\x01\x00"

    def _step(self) -> ProxyConnected | Pending:
        if self._phase == "method":
            if len(self._buffer) < 2:
                return NEED_DATA
            self._choose_method(self._take(2))
        if self._phase == "auth":
            if len(self._buffer) < 2:
                return NEED_DATA
            self._check_auth(self._take(2))
        return self._parse_reply()

    def _choose_method(self, answer: bytes) -> None:
        _check_socks5_version(answer[0])
        method = answer[1]
        if method == 0xFF and self._auth is None:
            raise RemoteProtocolError(UpstreamProxyReason.AUTH_REQUIRED, "the SOCKS5 proxy requires authentication; "
                                      "put user:password in the --upstream-proxy URL")
        if method == 0xFF:
            raise RemoteProtocolError(UpstreamProxyReason.AUTH_UNSUPPORTED,
                                      "the SOCKS5 proxy accepts neither no-auth nor username/password")
        if method == 0x02 and self._auth is not None:
            self._outgoing += self._auth
            self._phase = "auth"
        elif method == 0x00:
            self._outgoing += self._request
            self._phase = "reply"
        else:
            raise _bad_reply("SOCKS5", f"chose method 0x{method:02x}, which we did not offer")

    def _check_auth(self, answer: bytes) -> None:
        if answer[0] not in (0x01, 0x05):
            raise _bad_reply("SOCKS5", f"auth reply version 0x{answer[0]:02x}")
        if answer[1] != 0x00:
            raise RemoteProtocolError(UpstreamProxyReason.AUTH_REJECTED,
                                      "the SOCKS5 proxy rejected the username/password")
        self._outgoing += self._request
        self._phase = "reply"

    def _parse_reply(self) -> ProxyConnected | Pending:
        buf = self._buffer
        if len(buf) < 2:
            return NEED_DATA
        _check_socks5_version(buf[0])
        if buf[1] != ReplyCode.SUCCEEDED:
            reason, text = _SOCKS5_REASONS.get(
                buf[1], (UpstreamProxyReason.CONNECT_FAILED, f"unknown reply 0x{buf[1]:02x}"))
            raise RemoteProtocolError(reason, f"SOCKS5 proxy: {text} (reply 0x{buf[1]:02x})")
        if len(buf) < 5:
            return NEED_DATA
        lengths: dict[int, int] = {AddressType.IPV4: 4, AddressType.IPV6: 16, AddressType.DOMAIN: 1 + buf[4]}
        length = lengths.get(buf[3])
        if length is None:
            raise _bad_reply("SOCKS5", f"unknown bound address type 0x{buf[3]:02x}")
        if len(buf) < 4 + length + 2:
            return NEED_DATA
        reply = self._take(4 + length + 2)
        raw = reply[4:4 + length]
        if reply[3] == AddressType.DOMAIN:
            host = decode_domain(raw[1:]) or _printable(raw[1:], 255)
        else:
            host = format_ip(raw)
        return ProxyConnected(host, int.from_bytes(reply[-2:], "big"))


def _check_socks5_version(version: int) -> None:
    if version == ord("H"):
        raise _bad_reply("SOCKS5", "answered in HTTP; is it an HTTP proxy? use http:// in the URL")
    if version != 0x05:
        raise _bad_reply("SOCKS5", f"version byte 0x{version:02x}, expected 0x05")


def _socks5_auth_message(credentials: ProxyCredentials) -> bytes:
    user, password = _utf8(credentials.username), _utf8(credentials.password)
    if not 0 < len(user) <= 255 or len(password) > 255:
        raise LocalProtocolError(UpstreamProxyReason.BAD_CREDENTIALS,
                                 "SOCKS5 username must be 1-255 bytes, password 0-255")
    return bytes([0x01, len(user)]) + user + bytes([len(password)]) + password


# -- SOCKS4a ---------------------------------------------------------------------------

class Socks4aClientHandshake(_ClientHandshake):
    """SOCKS4 CONNECT to an IPv4 literal, SOCKS4a (0.0.0.1 + name) otherwise; no IPv6."""

    KIND = "SOCKS4a"

    def __init__(self, target_host: str, target_port: int, credentials: ProxyCredentials | None = None) -> None:
        super().__init__(target_host, target_port, credentials)
        user_id = _utf8(credentials.username) if credentials else b""
        if b"\x00" in user_id or len(user_id) > 255:
            raise LocalProtocolError(UpstreamProxyReason.BAD_CREDENTIALS,
                                     "SOCKS4 user id must be at most 255 bytes, no NUL")
        head = b"\x04\x01" + target_port.to_bytes(2, "big")
        self._outgoing += head + _socks4_address(target_host, user_id)

    def _step(self) -> ProxyConnected | Pending:
        if len(self._buffer) < 2:
            return NEED_DATA
        if self._buffer[0] not in (0x00, 0x04):  # VN is 0; some proxies echo 4
            raise _bad_reply("SOCKS4a", f"reply version byte 0x{self._buffer[0]:02x}, expected 0x00")
        code = self._buffer[1]
        if code != 0x5A:
            reason, text = _SOCKS4_REASONS.get(code, (UpstreamProxyReason.BAD_REPLY, "unknown reply code"))
            raise RemoteProtocolError(reason, f"SOCKS4a proxy: {text} (reply 0x{code:02x})")
        if len(self._buffer) < 8:
            return NEED_DATA
        self._take(8)
        return ProxyConnected()


def _socks4_address(host: str, user_id: bytes) -> bytes:
    """DSTIP + USERID NUL [+ DOMAIN NUL] for SOCKS4 (IPv4 literal) or SOCKS4a (name)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = _utf8(host)
        if b"\x00" in name or not 0 < len(name) <= 255:
            raise LocalProtocolError(UpstreamProxyReason.BAD_TARGET,
                                     f"cannot send host {host!r} over SOCKS4a") from None
        return b"\x00\x00\x00\x01" + user_id + b"\x00" + name + b"\x00"
    if address.version != 4:
        raise LocalProtocolError(UpstreamProxyReason.BAD_TARGET, "SOCKS4a cannot carry IPv6 targets; use socks5://")
    return address.packed + user_id + b"\x00"


# -- HTTP CONNECT ----------------------------------------------------------------------

class HttpConnectClientHandshake(_ClientHandshake):
    """``CONNECT host:port HTTP/1.1`` with Basic ``Proxy-Authorization`` when credentials are given."""

    KIND = "HTTP"

    def __init__(self, target_host: str, target_port: int, credentials: ProxyCredentials | None = None) -> None:
        super().__init__(target_host, target_port, credentials)
        authority = _authority(target_host, target_port)
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if credentials is not None:
            lines.append(f"Proxy-Authorization: {basic_authorization(credentials)}")
        self._outgoing += ("\r\n".join(lines) + "\r\n\r\n").encode()
        self._scan_from = 0

    def _step(self) -> ProxyConnected | Pending:
        while True:  # skip interim 1xx responses
            head = self._next_head()
            if head is None:
                return NEED_DATA
            status, reason_phrase, headers = _parse_response_head(head)
            if not 100 <= status < 200:
                break
        if 200 <= status < 300:
            return ProxyConnected()
        raise self._refusal(status, reason_phrase, headers)

    def _next_head(self) -> bytes | None:
        found = _HEAD_END.search(self._buffer, max(0, self._scan_from - 3))
        if found is None or found.end() > MAX_RESPONSE_HEAD:
            if len(self._buffer) >= MAX_RESPONSE_HEAD:
                raise _bad_reply("HTTP", f"response head exceeds {MAX_RESPONSE_HEAD} bytes")
            self._scan_from = len(self._buffer)
            return None
        self._scan_from = 0
        return self._take(found.end())

    def _refusal(self, status: int, phrase: str, headers: list[tuple[str, str]]) -> RemoteProtocolError:
        said = f"the HTTP proxy answered {status} {phrase}".rstrip()
        if status == 407:
            schemes = ", ".join(v.split(" ")[0] for n, v in headers if n == "proxy-authenticate") or "unknown"
            if self.credentials is None:
                return RemoteProtocolError(UpstreamProxyReason.AUTH_REQUIRED,
                                           f"{said}; it asks for {schemes} authentication: "
                                           "put user:password in the --upstream-proxy URL")
            return RemoteProtocolError(UpstreamProxyReason.AUTH_REJECTED,
                                       f"{said}; it asks for {schemes} authentication "
                                       "(only Basic is supported)")
        if status == 403:
            return RemoteProtocolError(UpstreamProxyReason.NOT_ALLOWED, said)
        return RemoteProtocolError(UpstreamProxyReason.CONNECT_FAILED, said)


def _parse_response_head(head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    lines = re.split(rb"\r?\n", head)
    status_line = _STATUS_LINE.fullmatch(lines[0])
    if status_line is None:
        raise _bad_reply("HTTP", f"not an HTTP status line: {_printable(lines[0], 60)!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            headers.append((_printable(name.strip()).lower(), _printable(value.strip())))
    return int(status_line[1]), _printable(status_line[2] or b""), headers


def _authority(host: str, port: int) -> str:
    if any(c in host for c in "\r\n\x00 /?#@") or not host.isprintable():
        raise LocalProtocolError(UpstreamProxyReason.BAD_TARGET, f"cannot put host {host!r} in a CONNECT request")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def basic_authorization(credentials: ProxyCredentials) -> str:
    """``Basic base64(user:password)`` (UTF-8); a colon in the username cannot be encoded."""
    if ":" in credentials.username:
        raise LocalProtocolError(UpstreamProxyReason.BAD_CREDENTIALS, "an HTTP proxy username cannot contain ':'")
    raw = _utf8(f"{credentials.username}:{credentials.password}")
    return "Basic " + base64.b64encode(raw).decode("ascii")


# -- choosing and configuring ----------------------------------------------------------

ClientHandshake = Socks5ClientHandshake | Socks4aClientHandshake | HttpConnectClientHandshake


def handshake_for(spec: ProxySpec, target_host: str, target_port: int) -> ClientHandshake:
    """The handshake object for ``spec.scheme``, carrying the spec's credentials."""
    kinds: dict[str, type[ClientHandshake]] = {
        "socks5": Socks5ClientHandshake, "socks4a": Socks4aClientHandshake, "http": HttpConnectClientHandshake}
    if spec.scheme not in kinds:
        raise LocalProtocolError(UpstreamProxyReason.BAD_SCHEME, f"no handshake for scheme {spec.scheme!r}")
    return kinds[spec.scheme](target_host, target_port, spec.credentials)



_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)", re.DOTALL)
_HOST_NAME = re.compile(r"[A-Za-z0-9._~\-]+")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_URL_EXAMPLE = "e.g. socks5://user:password@127.0.0.1:1080"


def parse_proxy_url(url: str) -> ProxySpec:
    """``scheme://[user[:password]@]host:port`` -> ``ProxySpec``; every problem at once."""
    match = _URL.fullmatch(url.strip())
    if match is None:
        raise _config_error([f"expected scheme://[user[:password]@]host:port, {_URL_EXAMPLE}"])
    problems: list[str] = []
    scheme = match[1].lower()
    if scheme not in SCHEMES:
        problems.append(f"unsupported scheme {_printable(scheme, 20)!r}; use one of {', '.join(SCHEMES)}")
    if match[3] not in ("", "/"):
        problems.append("the URL must not have a path, query or fragment")
    userinfo, at, hostport = match[2].rpartition("@")
    host, port = _url_host_port(hostport, problems)
    username, password = _url_credentials(userinfo, bool(at), problems)
    _check_credentials(scheme, username, password, problems)
    if problems:
        raise _config_error(problems)
    return ProxySpec(scheme, host, port, username, password)


def _config_error(messages: list[str]) -> ConfigError:
    return ConfigError([ConfigProblem("upstream_proxy", message) for message in messages])


def _url_host_port(hostport: str, problems: list[str]) -> tuple[str, int]:
    if hostport.startswith("["):
        literal, _, rest = hostport[1:].partition("]")
        try:
            if "%" in literal:
                raise ValueError(literal)
            host = format_ip(ipaddress.IPv6Address(literal).packed)
        except ValueError:
            problems.append("invalid IPv6 address between the brackets")
            host = ""
    elif hostport.count(":") > 1:
        problems.append("put an IPv6 proxy address in brackets, e.g. socks5://[::1]:1080")
        return "", 0
    else:
        host = hostport.partition(":")[0]
        rest = hostport[len(host):]
        if not host:
            problems.append(f"missing proxy host, {_URL_EXAMPLE}")
        elif not _HOST_NAME.fullmatch(host):
            problems.append(f"invalid proxy host {_printable(host, 80)!r}")
    return host, _url_port(rest, problems)


def _url_port(rest: str, problems: list[str]) -> int:
    digits = rest[1:]
    if not rest.startswith(":") or not digits:
        problems.append(f"missing proxy port, {_URL_EXAMPLE}")
        return 0
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 5 and 0 < int(digits) <= 0xFFFF):
        problems.append(f"invalid proxy port {_printable(digits, 20)!r}; expected 1-65535")
        return 0
    return int(digits)


def _url_credentials(userinfo: str, has_at: bool, problems: list[str]) -> tuple[str | None, str | None]:
    if not has_at:
        return None, None
    user_text, colon, password_text = userinfo.partition(":")
    username = _percent_decode(user_text, "username", problems)
    password = _percent_decode(password_text, "password", problems) if colon else None
    if username == "":
        problems.append("empty username before '@'")
    return username, password


def _percent_decode(text: str, what: str, problems: list[str]) -> str | None:
    if _BAD_PERCENT.search(text):
        problems.append(f"bad percent-encoding in the {what}")
        return None
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"the {what} is not UTF-8 after percent-decoding")
        return None


def _check_credentials(scheme: str, username: str | None, password: str | None, problems: list[str]) -> None:
    if not username:
        return
    user_bytes, password_bytes = username.encode("utf-8"), (password or "").encode("utf-8")
    if scheme == "socks5" and (len(user_bytes) > 255 or len(password_bytes) > 255):
        problems.append("SOCKS5 usernames and passwords are limited to 255 bytes each")
    elif scheme == "socks4a" and password is not None:
        problems.append("SOCKS4a has no passwords; give only a user id, e.g. socks4a://userid@host:1080")
    elif scheme == "socks4a" and ("\x00" in username or len(user_bytes) > 255):
        problems.append("a SOCKS4a user id must be at most 255 bytes without NUL")
    elif scheme == "http" and ":" in username:
        problems.append("an HTTP proxy username cannot contain ':'")
