"""The Go ``encoding/json`` subset the API speaks: writing it byte for byte, reading it strictly.

Strings and floats are written by ``onehop.core.canonicaljson`` (the one home of Go's
escaping and float formatting). The rest differs from that module on purpose and stays
here: ``bytes`` are embedded as raw JSON (Go's ``json.RawMessage``), integers are written
exactly (Go ``int``/``int64`` fields, not float64), and parsing keeps integers exact and
reports errors as ``invalid_<what>``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any
from collections.abc import Callable

from onehop.core.canonicaljson import encode_string as go_json_str
from onehop.core.canonicaljson import format_go_float
from onehop.errors import APIReason, LocalProtocolError, RemoteProtocolError

_GO_HTML_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                                  "\u2028": "\\u2028", "\u2029": "\\u2029"})
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[ \t\n\r]+', re.S)
_JSON_WS = re.compile(r"[ \t\n\r]*")

# ------------------------------------------------------------------------- writing


def go_float(x: float) -> str:
    """Go's float64 JSON form: shortest digits, exponent only outside [1e-6, 1e21)."""
    if math.isnan(x) or math.isinf(x):
        raise LocalProtocolError(APIReason.JSON_UNSUPPORTED_VALUE, repr(x))
    return format_go_float(x)


def go_compact(raw: bytes) -> str:
    """Embed raw JSON like Go does for json.RawMessage: validated, compacted, HTML-escaped."""
    text = parse_json_text(raw, "raw_json", LocalProtocolError)[1]
    return _JSON_TOKEN.sub(lambda m: m[0].translate(_GO_HTML_ESCAPES) if m[0][0] == '"' else "", text)


def go_json(value: Any) -> str:
    """Go encoding/json of a JSON-like value; dict keys sorted, bytes taken as raw JSON."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return go_json_str(value)
    if isinstance(value, (bytes, bytearray)):
        return go_compact(bytes(value))
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(go_json(item) for item in value) + "]"
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return go_json_object(sorted(value.items()))
    raise LocalProtocolError(APIReason.JSON_UNSUPPORTED_VALUE, type(value).__name__)


def go_json_object(pairs: list[tuple[str, Any]]) -> str:
    """A JSON object with members in the given order (Go struct field order)."""
    return "{" + ",".join(f"{go_json_str(k)}:{go_json(v)}" for k, v in pairs) + "}"


# ------------------------------------------------------------------------- reading


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:32]} out of range")
    return value


_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float)


def _invalid(what: str) -> APIReason:
    """The reason for an unreadable ``what`` ("handshake_response" -> ``INVALID_HANDSHAKE_RESPONSE``);
    a ``what`` without its member in ``APIReason`` is our bug and fails here (ValueError)."""
    return APIReason(f"invalid_{what}")


def parse_json_text(payload: bytes | str, what: str, error: type = RemoteProtocolError) -> tuple[Any, str]:
    """Strictly parse UTF-8 JSON (no NaN/Infinity); returns (value, text)."""
    try:
        text = payload if isinstance(payload, str) else bytes(payload).decode("utf-8")
        return _JSON_DECODER.decode(text), text
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(_invalid(what), str(exc)[:200]) from None


def parse_json_object(payload: bytes | str, what: str) -> dict[str, Any]:
    value = parse_json_text(payload, what)[0]
    if not isinstance(value, dict):
        raise RemoteProtocolError(_invalid(what), "not a JSON object")
    return value


def _skip_ws(text: str, pos: int) -> int:
    """The position of the first non-whitespace character at or after ``pos``."""
    match = _JSON_WS.match(text, pos)
    return match.end() if match else pos


def json_members(payload: bytes, what: str) -> dict[str, tuple[Any, str]]:
    """Top-level members of a JSON object as name -> (value, raw text); last one wins."""
    text = parse_json_text(payload, what)[1]
    members: dict[str, tuple[Any, str]] = {}
    pos = _skip_ws(text, 0)
    if text[pos:pos + 1] != "{":
        raise RemoteProtocolError(_invalid(what), "not a JSON object")
    pos = _skip_ws(text, pos + 1)
    while text[pos:pos + 1] != "}":
        name, pos = _JSON_DECODER.raw_decode(text, pos)  # text is known-valid JSON
        start = _skip_ws(text, _skip_ws(text, pos) + 1)  # past ":"
        value, pos = _JSON_DECODER.raw_decode(text, start)
        members[name] = (value, text[start:pos])
        pos = _skip_ws(text, pos)
        if text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
    return members


def is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def member(obj: dict[str, Any], name: str, check: Callable[[Any], bool], what: str) -> Any:
    """A JSON member that must pass ``check``; missing and null read as ``None``."""
    value = obj.get(name)
    if value is not None and not check(value):
        raise RemoteProtocolError(_invalid(what), f"{name}: unexpected {type(value).__name__}")
    return value
