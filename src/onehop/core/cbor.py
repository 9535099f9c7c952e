"""A small CBOR codec (RFC 8949) for Psiphon's packed API payloads.

``dumps`` writes the CTAP2 canonical form that Psiphon's Go code produces: shortest
integer and length heads, definite lengths only, map keys sorted by encoded length then
bytewise, and floats in the shortest of float16/32/64 that keeps the value exactly (NaN
becomes ``f9 7e00``, infinities float16), as Go's CTAP2 mode does. Supported values: ``None``,
``bool``, ``int`` (-2**64 .. 2**64-1), ``float``, ``bytes``, ``str``, ``list``/``tuple`` and
``dict`` with ``int`` or ``str`` keys. Anything else is our misuse: ``LocalProtocolError``.

``loads`` reads any well-formed item of major types 0-7, definite or indefinite length, and
returns Python values (arrays become lists). It refuses, with ``RemoteProtocolError``:
tags (major type 6; tag 0/1 dates never occur in Psiphon's payloads, so they are rejected
rather than half-supported), simple values other than false/true/null/undefined
(undefined decodes to ``None``), map keys that are not int/str/bytes, duplicate map keys,
invalid UTF-8 text, trailing bytes, nesting deeper than ``max_depth`` and any declared
length or item count larger than the bytes that remain, so hostile input cannot make it
allocate or loop beyond the size of the input.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from onehop.errors import CBORReason, LocalProtocolError, RemoteProtocolError

MAX_DEPTH = 32
"""Default limit on container nesting for both ``dumps`` and ``loads``."""

_UINT64_LIMIT = 1 << 64
_MAJOR_UINT, _MAJOR_NEGINT, _MAJOR_BYTES, _MAJOR_TEXT = 0, 1, 2, 3
_MAJOR_ARRAY, _MAJOR_MAP, _MAJOR_TAG, _MAJOR_SIMPLE = 4, 5, 6, 7
_INDEFINITE = 31
_BREAK = 0xFF
_SIMPLE_VALUES = {20: False, 21: True, 22: None, 23: None}


# ----------------------------------------------------------------------------- encoding


def dumps(obj: Any, *, max_depth: int = MAX_DEPTH) -> bytes:
    """Encode ``obj`` as canonical (CTAP2) CBOR."""
    out = bytearray()
    _encode(obj, out, 0, max_depth)
    return bytes(out)


def _head(major: int, n: int) -> bytes:
    """The initial byte(s) of an item: major type plus the shortest argument form."""
    if n < 24:
        return bytes([major << 5 | n])
    if n < 0x100:
        return bytes([major << 5 | 24, n])
    if n < 0x10000:
        return bytes([major << 5 | 25]) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes([major << 5 | 26]) + n.to_bytes(4, "big")
    return bytes([major << 5 | 27]) + n.to_bytes(8, "big")


def _encode(obj: Any, out: bytearray, depth: int, max_depth: int) -> None:
    if depth > max_depth:
        raise LocalProtocolError(CBORReason.TOO_DEEP, f"nesting exceeds {max_depth}")
    if obj is None:
        out.append(0xF6)
    elif obj is True or obj is False:
        out.append(0xF5 if obj else 0xF4)
    elif isinstance(obj, int):
        out += _encode_int(obj)
    elif isinstance(obj, float):
        out += _encode_float(obj)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        out += _head(_MAJOR_BYTES, len(data)) + data
    elif isinstance(obj, str):
        data = _utf8(obj)
        out += _head(_MAJOR_TEXT, len(data)) + data
    elif isinstance(obj, (list, tuple)):
        out += _head(_MAJOR_ARRAY, len(obj))
        for item in obj:
            _encode(item, out, depth + 1, max_depth)
    elif isinstance(obj, dict):
        _encode_map(obj, out, depth, max_depth)
    else:
        raise LocalProtocolError(CBORReason.UNSUPPORTED_TYPE, type(obj).__name__)


def _encode_int(n: int) -> bytes:
    if 0 <= n < _UINT64_LIMIT:
        return _head(_MAJOR_UINT, n)
    if -_UINT64_LIMIT <= n < 0:
        return _head(_MAJOR_NEGINT, -1 - n)
    raise LocalProtocolError(CBORReason.INT_OUT_OF_RANGE, str(n))


def _encode_float(x: float) -> bytes:
    """Shortest of float16/32/64 that round-trips ``x`` exactly (Go CTAP2 ShortestFloat16)."""
    if math.isnan(x):
        return b"\xf9\x7e\x00"
    for fmt, initial in ((">e", 0xF9), (">f", 0xFA)):
        try:
            packed = struct.pack(fmt, x)
        except OverflowError:
            continue
        if struct.unpack(fmt, packed)[0] == x:
            return bytes([initial]) + packed
    return b"\xfb" + struct.pack(">d", x)


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(CBORReason.INVALID_TEXT, "string is not valid Unicode") from exc


def _encode_map(obj: dict[Any, Any], out: bytearray, depth: int, max_depth: int) -> None:
    entries = []
    for key, value in obj.items():
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise LocalProtocolError(CBORReason.UNSUPPORTED_KEY, type(key).__name__)
        entries.append((_encode_int(key) if isinstance(key, int) else dumps(key), value))
    entries.sort(key=lambda entry: (len(entry[0]), entry[0]))
    out += _head(_MAJOR_MAP, len(entries))
    for encoded_key, value in entries:
        out += encoded_key
        _encode(value, out, depth + 1, max_depth)


# ----------------------------------------------------------------------------- decoding


def loads(data: bytes | bytearray | memoryview, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode exactly one CBOR item filling all of ``data``."""
    decoder = _Decoder(bytes(data), max_depth)
    value = decoder.item(0)
    if decoder.pos != len(decoder.data):
        raise RemoteProtocolError(CBORReason.TRAILING_DATA, f"{len(decoder.data) - decoder.pos} bytes after the item")
    return value


class _Decoder:
    """A cursor over the input; one method per major-type family."""

    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.remaining():
            raise RemoteProtocolError(CBORReason.TRUNCATED, f"need {n} bytes, {self.remaining()} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def head(self) -> tuple[int, int, int]:
        """Read an initial byte and its argument: (major, additional info, argument)."""
        initial = self.take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, info
        if info <= 27:
            return major, info, int.from_bytes(self.take(1 << (info - 24)), "big")
        if info == _INDEFINITE and major in (_MAJOR_BYTES, _MAJOR_TEXT, _MAJOR_ARRAY, _MAJOR_MAP):
            return major, info, 0
        if initial == _BREAK:
            raise RemoteProtocolError(CBORReason.UNEXPECTED_BREAK, f"at offset {self.pos - 1}")
        raise RemoteProtocolError(CBORReason.MALFORMED, f"initial byte {initial:#04x} at offset {self.pos - 1}")

    def at_break(self) -> bool:
        """Consume a break byte if one is next (inside an indefinite-length item)."""
        if self.remaining() < 1:
            raise RemoteProtocolError(CBORReason.TRUNCATED, "missing break")
        if self.data[self.pos] == _BREAK:
            self.pos += 1
            return True
        return False

    def item(self, depth: int) -> Any:
        if depth > self.max_depth:
            raise RemoteProtocolError(CBORReason.TOO_DEEP, f"nesting exceeds {self.max_depth}")
        major, info, arg = self.head()
        if major == _MAJOR_UINT:
            return arg
        if major == _MAJOR_NEGINT:
            return -1 - arg
        if major in (_MAJOR_BYTES, _MAJOR_TEXT):
            return self.string(major, info, arg)
        if major == _MAJOR_ARRAY:
            return self.array(info, arg, depth)
        if major == _MAJOR_MAP:
            return self.map(info, arg, depth)
        if major == _MAJOR_TAG:
            raise RemoteProtocolError(CBORReason.TAG_UNSUPPORTED, f"tag {arg}")
        return self.simple(info, arg)

    def string(self, major: int, info: int, length: int) -> bytes | str:
        if info != _INDEFINITE:
            raw = self.take(length)
        else:
            chunks = []
            while not self.at_break():
                chunk_major, chunk_info, chunk_length = self.head()
                if chunk_major != major or chunk_info == _INDEFINITE:
                    raise RemoteProtocolError(CBORReason.BAD_CHUNK, "indefinite string chunk of the wrong kind")
                chunks.append(self.take(chunk_length))
            raw = b"".join(chunks)
        if major == _MAJOR_BYTES:
            return raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(CBORReason.INVALID_UTF8, str(exc)) from exc

    def array(self, info: int, count: int, depth: int) -> list[Any]:
        if info == _INDEFINITE:
            items = []
            while not self.at_break():
                items.append(self.item(depth + 1))
            return items
        if count > self.remaining():
            raise RemoteProtocolError(CBORReason.TRUNCATED, f"array of {count} items in {self.remaining()} bytes")
        return [self.item(depth + 1) for _ in range(count)]

    def map(self, info: int, count: int, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        if info != _INDEFINITE and 2 * count > self.remaining():
            raise RemoteProtocolError(CBORReason.TRUNCATED, f"map of {count} pairs in {self.remaining()} bytes")
        index = 0
        while (index < count) if info != _INDEFINITE else not self.at_break():
            key = self.item(depth + 1)
            if isinstance(key, bool) or not isinstance(key, (int, str, bytes)):
                raise RemoteProtocolError(CBORReason.UNSUPPORTED_KEY, type(key).__name__)
            if key in result:
                raise RemoteProtocolError(CBORReason.DUPLICATE_KEY, repr(key)[:64])
            result[key] = self.item(depth + 1)
            index += 1
        return result

    def simple(self, info: int, arg: int) -> Any:
        if info in _SIMPLE_VALUES:
            return _SIMPLE_VALUES[info]
        if info == 25:
            return struct.unpack(">e", arg.to_bytes(2, "big"))[0]
        if info == 26:
            return struct.unpack(">f", arg.to_bytes(4, "big"))[0]
        if info == 27:
            return struct.unpack(">d", arg.to_bytes(8, "big"))[0]
        raise RemoteProtocolError(CBORReason.SIMPLE_UNSUPPORTED, f"simple value {arg}")
