"""Go ``encoding/json`` compatible JSON, as used for Psiphon signatures.

Psiphon signs a server entry by re-marshalling its generic field map with Go's
``json.Marshal``; a verifier must reproduce those bytes exactly. This module holds
both halves of that round trip:

* :func:`loads` parses JSON the way Go's ``json.Unmarshal`` into ``interface{}`` sees
  it: numbers are float64 (we keep exact ``int`` when float64 represents it exactly),
  NaN/Infinity literals and out-of-range numbers are rejected, and invalid surrogate
  escapes become U+FFFD.
* :func:`dumps` writes Go's output: object keys sorted bytewise, no whitespace,
  HTML-safe escapes (``<`` ``>`` ``&`` as ``\\u003c`` ``\\u003e`` ``\\u0026``),
  U+2028/U+2029 escaped, control characters as ``\\b \\f \\n \\r \\t`` (Go >= 1.22) or
  ``\\u00xx``, and float64 numbers formatted like Go's ``strconv.FormatFloat``.

Parse errors raise :class:`onehop.errors.RemoteProtocolError` (the text came from
outside); unsupported values given to :func:`dumps` raise
:class:`onehop.errors.LocalProtocolError`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from onehop.errors import JSONReason, LocalProtocolError, RemoteProtocolError

MAX_DEPTH = 100  # far beyond any Psiphon document; keeps recursive walks safe
_MAX_SAFE_INT = 1 << 53  # beyond this an integer does not survive float64 exactly
_HEX = "0123456789abcdef"
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile('[\x00-\x1f"\\\\<>&\u2028\u2029\ud800-\udfff]')
_SURROGATE = re.compile("[\ud800-\udfff]")


# --------------------------------------------------------------------------- parsing

def _reject_constant(name: str) -> Any:
    raise RemoteProtocolError(JSONReason.INVALID_JSON, f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise RemoteProtocolError(JSONReason.INVALID_JSON, f"number {text[:40]} is out of float64 range")
    return value


def _parse_int(text: str) -> int | float:
    # Go decodes every number into float64: keep an int only while that is exact.
    if text == "-0":
        return -0.0
    if len(text.lstrip("-")) <= 15:
        return int(text)
    value = _parse_float(text)
    if abs(value) <= _MAX_SAFE_INT and value == int(text):
        return int(text)
    return value


def _scrub(value: Any, depth: int) -> Any:
    """Replace lone surrogates (from ``\\udXXX`` escapes) by U+FFFD, as Go's decoder does,
    and enforce the nesting limit so later recursive walks stay shallow."""
    if isinstance(value, str):
        return _scrub_str(value)
    if isinstance(value, (list, dict)) and depth <= 0:
        raise RemoteProtocolError(JSONReason.INVALID_JSON, "nesting too deep")
    if isinstance(value, list):
        return [_scrub(v, depth - 1) for v in value]
    if isinstance(value, dict):
        return {_scrub_str(k): _scrub(v, depth - 1) for k, v in value.items()}
    return value


def _scrub_str(text: str) -> str:
    if not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub("\ufffd", text)


def loads(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text like Go's ``json.Unmarshal`` into ``interface{}``.

    ``bytes`` must be valid UTF-8; arrays/objects may nest ``max_depth`` deep.
    Raises ``RemoteProtocolError(reason='invalid_json')``.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(JSONReason.INVALID_JSON, f"not UTF-8 at byte {exc.start}") from None
    try:
        value = json.loads(data, parse_int=_parse_int, parse_float=_parse_float,
                           parse_constant=_reject_constant)
        return _scrub(value, max_depth)
    except RecursionError:
        raise RemoteProtocolError(JSONReason.INVALID_JSON, "nesting too deep") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise RemoteProtocolError(JSONReason.INVALID_JSON, str(exc)) from None


# --------------------------------------------------------------------------- encoding

def _escape_char(ch: str, lone_surrogate: str = "\ufffd") -> str:
    short = _SHORT_ESCAPES.get(ch)
    if short is not None:
        return short
    if "\ud800" <= ch <= "\udfff":
        return lone_surrogate
    code = ord(ch)
    return "\\u" + _HEX[code >> 12] + _HEX[(code >> 8) & 15] + _HEX[(code >> 4) & 15] + _HEX[code & 15]


def _encode_str(text: str) -> str:
    # A lone surrogate stands for what Go's decoder turned into a raw U+FFFD.
    return '"' + _NEEDS_ESCAPE.sub(lambda m: _escape_char(m.group()), text) + '"'


def _encode_go_bytes(raw: bytes) -> str:
    """A Go ``string`` holding arbitrary bytes: each invalid UTF-8 byte becomes ``\\ufffd``.

    surrogateescape maps every undecodable byte to its own surrogate, which matches
    Go's one-byte-at-a-time replacement.
    """
    text = raw.decode("utf-8", "surrogateescape")
    return '"' + _NEEDS_ESCAPE.sub(lambda m: _escape_char(m.group(), "\\ufffd"), text) + '"'


def format_go_float(value: float) -> str:
    """Go's encoding of a float64: shortest digits, 'f' form unless < 1e-6 or >= 1e21."""
    if math.isnan(value) or math.isinf(value):
        raise LocalProtocolError(JSONReason.UNSUPPORTED_VALUE, f"JSON cannot encode {value!r}")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    assert isinstance(exponent, int)  # NaN and infinities were refused above
    point = len(digits) + exponent  # position of the decimal point within the digits
    prefix = "-" if sign else ""
    if abs(value) < 1e-6 or abs(value) >= 1e21:
        exp = point - 1
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}".replace("e-0", "e-")
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text}"
    if point >= len(text):
        return prefix + text + "0" * (point - len(text))
    return f"{prefix}{text[:point]}.{text[point:]}"


def _encode_number(value: int | float) -> str:
    if isinstance(value, int):
        if abs(value) <= _MAX_SAFE_INT:
            return str(value)
        value = float(value)  # what Go's float64 would hold
    return format_go_float(value)


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True or value is False:
        out.append("true" if value else "false")
    elif isinstance(value, str):
        out.append(_encode_str(value))
    elif isinstance(value, (int, float)):
        out.append(_encode_number(value))
    elif isinstance(value, (bytes, bytearray)):
        out.append(_encode_go_bytes(bytes(value)))
    elif isinstance(value, Mapping):
        _encode_object(value, out)
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise LocalProtocolError(JSONReason.UNSUPPORTED_VALUE, f"cannot encode {type(value).__name__} as JSON")


def _key_bytes(key: str) -> bytes:
    return _scrub_str(key).encode("utf-8")


def _encode_object(obj: Mapping[str, Any], out: list[str]) -> None:
    for key in obj:
        if not isinstance(key, str):
            raise LocalProtocolError(JSONReason.UNSUPPORTED_VALUE, "JSON object keys must be str")
    out.append("{")
    for i, key in enumerate(sorted(obj, key=_key_bytes)):
        if i:
            out.append(",")
        out.append(_encode_str(key))
        out.append(":")
        _encode(obj[key], out)
    out.append("}")


def dumps(value: Any) -> bytes:
    """Serialise ``value`` exactly as Go's ``json.Marshal`` would (maps sorted by key).

    ``bytes`` values stand for Go strings holding raw bytes (not ``[]byte``): invalid
    UTF-8 bytes in them are written as ``\\ufffd`` just as Go does.
    """
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")


def encode_string(text: str) -> str:
    """One JSON string literal with Go's escaping (used for struct-order encoders)."""
    return _encode_str(text)


def encode_value(value: Any) -> str:
    """Any JSON value with Go's escaping and number formatting, as text."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out)
