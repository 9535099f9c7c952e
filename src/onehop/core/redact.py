"""Removing addresses and secrets from diagnostics (pure: text and JSON values in and out).

The project's one redactor. Used by the client before a feedback package is encrypted, by
the operator before a decrypted record is stored (defence in depth, and for Psiphon clients
that redact less), and, addresses only (``redact_addresses``), by the server for free text
it logs and by stats ingest. Every pattern is anchored by a look-behind at the start of a run,
so the work is linear in the text's length (a server runs it on what clients send). What goes:

* IP addresses, v4 and v6, in any context (``host:port``, ``[v6]:port``, URLs, zone
  IDs, IPv4-mapped v6): each becomes ``[ip]``, or ``[server:<id>]`` when it is a known
  server address (``server_ids``), or stays as written when the caller keeps it
  (``keep``: the client keeps the addresses of its own server entries, which are public
  to the operators, so the operator can map them to server IDs). Matching errs on the
  side of removing: any dotted quad of numbers, and any run of hex digits, colons and
  dots with ``::`` or at least six colons, counts as an address.
* MAC addresses (``[mac]``).
* Secrets: values of secret-looking JSON members or ``name=value`` / ``name: value``
  pairs (passwords, keys, tokens, session IDs, cookies, authorization, signatures),
  ``user:password@`` in URLs, bearer/basic credentials, PEM blocks, long hex strings
  (32+ digits: session IDs, keys, encoded server entries) and long base64 runs.

``redact`` is idempotent, and its output contains no address it was not told to keep.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

IP = "[ip]"
MAC = "[mac]"
SECRET = "[secret]"

#: Substrings of parameter names whose values are secrets (compared without case).
_SECRET_PARTS = ("password", "passwd", "passphrase", "secret", "token", "sessionid", "session_id",
                 "session-id", "cookie", "credential", "authorization", "signature", "privatekey",
                 "private_key", "private-key", "apikey", "api_key", "api-key")
_SECRET_NAMES = frozenset({"pwd", "pass", "auth", "psk", "sid"})
_NOT_SECRET_NAMES = frozenset({"keys"})

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]{1,40}-----.*?(?:-----END [A-Z0-9 ]{1,40}-----|\Z)", re.DOTALL)
_URL_USERINFO = re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*://)[^\s/@\"'<>]*@")
_AUTH_HEADER = re.compile(r"(?i)\b(bearer|basic|digest)\s+[A-Za-z0-9._~+/=-]{6,}")
_PAIR_NAME = re.compile(r"(?<![\w.-])([\w.-]+)([\"']?\s*[=:]\s*)")
_PAIR_VALUE = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s,;&\"'}\]]+")
_LONG_HEX = re.compile(r"(?i)(?<![0-9a-z])[0-9a-f]{32,}(?![0-9a-z])")
_LONG_B64 = re.compile(r"(?<![A-Za-z0-9+/=])(?=[A-Za-z0-9+/]*[0-9+/])[A-Za-z0-9+/]{40,}={0,2}")
_MAC_ADDR = re.compile(r"(?i)(?<![0-9a-f:-])[0-9a-f]{2}([:-])(?:[0-9a-f]{2}\1){4}[0-9a-f]{2}(?![0-9a-f:-])")
_V6_RUN = re.compile(r"(?<![0-9A-Fa-f:.])[0-9A-Fa-f.]*(?::[0-9A-Fa-f.]*){2,}(?:%[0-9A-Za-z_.-]+)?")
_V4 = re.compile(r"(?<![0-9])[0-9]+(?:\.[0-9]+){3}(?![0-9])")


@dataclass(frozen=True)
class Redactor:
    """``server_ids`` maps a server address to its ID; ``keep`` lists addresses left as is."""

    server_ids: Mapping[str, str] = field(default_factory=dict)
    keep: Collection[str] = ()
    _ids: dict[str, str] = field(init=False, repr=False, compare=False)
    _keep: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = {normal: sid for ip, sid in self.server_ids.items() if (normal := _normal(ip)) is not None}
        object.__setattr__(self, "_ids", ids)
        object.__setattr__(self, "_keep", frozenset(n for ip in self.keep if (n := _normal(ip)) is not None))

    # -- addresses ----------------------------------------------------------------------

    def _address(self, text: str) -> str | None:
        """The replacement of a token known to be one address, or None if it is not one."""
        if not self._ids and not self._keep:
            return IP  # every caller turns a non-address into IP too: no need to parse
        normal = _normal(text)
        if normal is None:
            return None
        if normal in self._ids:
            return f"[server:{self._ids[normal]}]"
        return text if normal in self._keep else IP

    def _v6(self, match: re.Match[str]) -> str:
        run: str = match.group(0)
        if "::" not in run and run.count(":") < 6:
            return run  # a time of day, a port, a ratio: not an address
        token = run.rstrip(".")
        replacement = self._address(token)
        return (IP if replacement is None else replacement) + run[len(token):]

    def _v4(self, match: re.Match[str]) -> str:
        exact = self._address(match.group(0))
        return exact if exact is not None else IP

    # -- text and values ----------------------------------------------------------------

    def addresses(self, text: str) -> str:
        """One string with every IP address replaced (secrets left alone)."""
        return _V4.sub(self._v4, _V6_RUN.sub(self._v6, text))

    def text(self, text: str) -> str:
        """One string with every address and secret replaced."""
        text = _PEM.sub(SECRET, text)
        text = _URL_USERINFO.sub(lambda m: m.group(1) + SECRET + "@", text)
        text = _AUTH_HEADER.sub(lambda m: m.group(1) + " " + SECRET, text)
        text = _redact_pairs(text)
        text = _MAC_ADDR.sub(MAC, text)
        text = _V6_RUN.sub(self._v6, text)
        text = _V4.sub(self._v4, text)
        text = _LONG_HEX.sub(SECRET, text)
        return _LONG_B64.sub(SECRET, text)

    def value(self, value: Any) -> Any:
        """A JSON value with secret-named members blanked and every string redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): (SECRET if is_secret_name(str(k)) and _has_content(v) else self.value(v))
                    for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.value(v) for v in value]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return self.text(str(value))  # anything else (an exception, a path) as redacted text


def is_secret_name(name: str) -> bool:
    """True for JSON member / parameter names whose values must never leave the machine."""
    lowered = name.lower()
    if lowered in _NOT_SECRET_NAMES:
        return False
    last = re.split(r"[._-]", lowered)[-1]
    return (lowered in _SECRET_NAMES or last in _SECRET_NAMES or any(part in lowered for part in _SECRET_PARTS)
            or lowered.rstrip("s").endswith("key"))


def _redact_pairs(text: str) -> str:
    """``name=value`` / ``name: value`` / ``"name": "value"`` with a secret name."""
    out, position = [], 0
    for match in _PAIR_NAME.finditer(text):
        if match.start() < position or not is_secret_name(match.group(1)):
            continue
        if text.startswith((SECRET, f'"{SECRET}"', f"'{SECRET}'"), match.end()):
            continue  # already redacted
        value = _PAIR_VALUE.match(text, match.end())
        if value is None:
            continue
        quoted = value.group(0)[:1] if value.group(0)[:1] in "\"'" else ""
        out += [text[position:match.end()], quoted + SECRET + quoted]
        position = value.end()
    out.append(text[position:])
    return "".join(out)


def _has_content(value: Any) -> bool:
    return value not in (None, "", [], {}) and not isinstance(value, bool)


def _normal(text: str) -> str | None:
    """Canonical form of an address token (zone and v4-mapping removed), or None."""
    token = text.strip("[]")
    token = token.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(token)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


_ADDRESSES_ONLY = Redactor()


def redact_addresses(text: str) -> str:
    """``text`` with every IPv4 and IPv6 address replaced by ``[ip]``."""
    return _ADDRESSES_ONLY.addresses(text)


def redact(value: Any, server_ids: Mapping[str, str] | None = None, keep: Collection[str] = ()) -> Any:
    """Shorthand for ``Redactor(server_ids, keep).value(value)``."""
    return Redactor(server_ids or {}, keep).value(value)
