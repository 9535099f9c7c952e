"""OSSH prefixes: bytes that make the first packets look like another protocol.

The client writes ``prefix || terminator || seed message || prefix header``; the
terminator is an HKDF of the keyword salted with the prefix's first 24 bytes, so only
a server that knows the keyword can find where the prefix ends. A server that saw a
prefix answers with its own prefix and terminator. The prefix header (RC4-encrypted
with the seed message) names the spec so the server can answer in kind.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Literal, cast

from ...errors import OSSHReason, RemoteProtocolError
from ..prng import SeededPRNG
from ..sansio import NEED_DATA, Pending
from . import regen
from .cipher import make_terminator
from .constants import (PREAMBLE_HEADER_LENGTH, PREFIX_HEADER_VERSION,
                        PREFIX_MAX_HEADER_LENGTH, PREFIX_MAX_LENGTH,
                        PREFIX_TERMINATOR_LENGTH)

HTTP_GET_SPEC_NAME = "http-get"

#: Client prefixes we ship: an ordinary-looking HTTP request head.
DEFAULT_CLIENT_PREFIX_SPECS: dict[str, str] = {
    HTTP_GET_SPEC_NAME: (
        r"GET /[a-z0-9]{1,12} HTTP/1\.1\r\n"
        r"Host: www\.[a-z]{4,10}\.(com|net|org)\r\n"
        r"User-Agent: Mozilla/5\.0 \(Windows NT 10\.0; Win64; x64\)\r\n"
        r"Accept: \*/\*\r\n\r\n"
    ),
}

#: Server answers by spec name (Psiphon's server-side ServerOSSHPrefixSpecs).
DEFAULT_SERVER_PREFIX_SPECS: dict[str, str] = {
    HTTP_GET_SPEC_NAME: (
        r"HTTP/1\.1 200 OK\r\nContent-Type: text/html\r\n"
        r"Content-Length: [1-9][0-9]{2,4}\r\n\r\n"
    ),
}

_RANDOM_24 = r"[\x00-\xff]{24}"


@dataclass(frozen=True)
class PrefixSpec:
    """A named prefix generator (regex syntax, see ``regen``)."""

    name: str
    pattern: str

    def __post_init__(self) -> None:
        if len(self.name.encode()) > PREFIX_MAX_HEADER_LENGTH:
            raise ValueError("prefix spec name too long")
        regen.compile_pattern(self.pattern)  # fail early on a bad pattern


def prefix_specs_problem(specs: dict[str, Any]) -> str | None:
    """What is wrong with a name -> pattern mapping of prefix specs, or None."""
    for name, pattern in specs.items():
        if not isinstance(pattern, str):
            return f"{name}: the pattern must be a string"
        try:
            PrefixSpec(name, pattern)
        except ValueError as exc:
            return f"{name}: {exc}"
    return None


def default_client_prefix(name: str = HTTP_GET_SPEC_NAME) -> PrefixSpec:
    return PrefixSpec(name, DEFAULT_CLIENT_PREFIX_SPECS[name])


def generate_prefix(pattern: str, seed: bytes) -> tuple[bytes, int]:
    """(prefix padded to >= 24 bytes, length before padding) from a 32-byte seed."""
    prng = SeededPRNG(seed)
    generated = regen.generate(pattern, prng)
    if len(generated) >= PREAMBLE_HEADER_LENGTH:
        return generated, len(generated)
    return generated + prng.read(PREAMBLE_HEADER_LENGTH - len(generated)), len(generated)


def terminated_prefix(pattern: str, seed: bytes, keyword: bytes, label: bytes) -> tuple[bytes, int]:
    """(prefix || terminator, generated length)."""
    prefix, generated_length = generate_prefix(pattern, seed)
    return prefix + make_terminator(keyword, prefix, label), generated_length


def server_reply_pattern(spec_name: str, server_specs: dict[str, str]) -> str:
    """The server's prefix pattern for a client spec name (24 random bytes if unknown)."""
    return server_specs.get(spec_name, _RANDOM_24)


def encode_prefix_header(spec_name: str) -> bytes:
    name = spec_name.encode("utf-8")
    if len(name) > PREFIX_MAX_HEADER_LENGTH:
        raise ValueError("prefix spec name too long")
    return struct.pack(">HH", PREFIX_HEADER_VERSION, len(name)) + name


def parse_prefix_header_fixed(fixed: bytes) -> int:
    """Validate the 4 decrypted fixed bytes of a prefix header; return the name length."""
    version, length = cast("tuple[int, int]", struct.unpack(">HH", fixed))
    if version != PREFIX_HEADER_VERSION:
        raise RemoteProtocolError(OSSHReason.BAD_PREFIX_HEADER, f"version {version}")
    if length > PREFIX_MAX_HEADER_LENGTH:
        raise RemoteProtocolError(OSSHReason.BAD_PREFIX_HEADER, f"name length {length}")
    return length


class TerminatorScanner:
    """Skips a plaintext prefix: finds the terminator derived from its first 24 bytes.

    ``feed`` returns the bytes that follow the terminator once it is found, ``NEED_DATA``
    while more input is needed, and raises RemoteProtocolError past the search limit.
    """

    def __init__(self, keyword: bytes, label: bytes) -> None:
        self._keyword = keyword
        self._label = label
        self._buffer = bytearray()
        self._terminator: bytes | None = None
        self._searched_from = PREAMBLE_HEADER_LENGTH

    def feed(self, data: bytes) -> bytes | Literal[Pending.NEED_DATA]:
        self._buffer += data
        if self._terminator is None:
            if len(self._buffer) < PREAMBLE_HEADER_LENGTH:
                return NEED_DATA
            self._terminator = make_terminator(self._keyword, bytes(self._buffer), self._label)
        index = self._buffer.find(self._terminator, self._searched_from)
        if index >= 0:
            rest = bytes(self._buffer[index + PREFIX_TERMINATOR_LENGTH:])
            self._buffer = bytearray()
            return rest
        limit = PREAMBLE_HEADER_LENGTH + PREFIX_MAX_LENGTH
        if len(self._buffer) >= limit:
            raise RemoteProtocolError(OSSHReason.NO_PREFIX_TERMINATOR, f"none within {limit} bytes")
        # A terminator may straddle the next chunk: re-search its possible start.
        self._searched_from = max(PREAMBLE_HEADER_LENGTH, len(self._buffer) - PREFIX_TERMINATOR_LENGTH + 1)
        return NEED_DATA
