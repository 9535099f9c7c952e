"""API response payloads: handshake (Go JSON or integer-keyed CBOR), connected and status (JSON).

Encoders write Go's struct field order; decoders check every field against its Go type
and raise ``RemoteProtocolError`` for anything else. Unknown fields are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from onehop.core.cbor import dumps as cbor_dumps
from onehop.core.cbor import loads as cbor_loads
from onehop.errors import APIReason, RemoteProtocolError

from .gojson import go_json_object, is_string_list, json_members, member, parse_json_object

_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)

# (JSON name = attribute, CBOR key, kind), in Go struct field order.
_HANDSHAKE_FIELDS = (
    ("homepages", 1, "strs"), ("upgrade_client_version", 2, "str"),
    ("page_view_regexes", 3, "maps"), ("https_request_regexes", 4, "maps"),
    ("encoded_server_list", 5, "strs"), ("client_region", 6, "str"),
    ("client_address", 7, "str"), ("server_timestamp", 8, "str"),
    ("active_authorization_ids", 9, "strs"), ("tactics_payload", 10, "raw"),
    ("tactics_payload_compression", 11, "int32"), ("upstream_bytes_per_second", 12, "int64"),
    ("downstream_bytes_per_second", 13, "int64"), ("steering_ip", 14, "str"),
    ("padding", 15, "str"),
)


@dataclass(frozen=True)
class HandshakeResponse:
    """The server's handshake answer; empty fields are omitted on the wire.

    ``tactics_payload`` is raw bytes: JSON text in a JSON response, CBOR in a CBOR one.
    """

    homepages: tuple[str, ...] = ()
    upgrade_client_version: str = ""
    page_view_regexes: tuple[dict[str, str], ...] = ()
    https_request_regexes: tuple[dict[str, str], ...] = ()
    encoded_server_list: tuple[str, ...] = ()
    client_region: str = ""
    client_address: str = ""
    server_timestamp: str = ""
    active_authorization_ids: tuple[str, ...] = ()
    tactics_payload: bytes = b""
    tactics_payload_compression: int = 0
    upstream_bytes_per_second: int = 0
    downstream_bytes_per_second: int = 0
    steering_ip: str = ""
    padding: str = ""


def encode_handshake_response(resp: HandshakeResponse, cbor: bool) -> bytes:
    """Go's JSON (struct field order) or canonical CBOR with integer keys 1..15."""
    present = [(name, key, getattr(resp, name)) for name, key, _ in _HANDSHAKE_FIELDS
               if getattr(resp, name) not in ("", b"", 0, (), [], None)]
    if cbor:
        return cbor_dumps({key: value for _, key, value in present})
    return go_json_object([(name, value) for name, _, value in present]).encode("utf-8")


def decode_handshake_response(payload: bytes) -> HandshakeResponse:
    """Parse a JSON or CBOR (integer-keyed) handshake response; unknown fields are ignored."""
    payload = bytes(payload)
    if payload[:1] and payload[0] >> 5 == 5:  # CBOR major type 5: a map
        found = cbor_loads(payload)
        values = {name: found.get(key) for name, key, _ in _HANDSHAKE_FIELDS}
    else:
        members = json_members(payload, "handshake_response")
        values = {name: members.get(name, (None, ""))[0] for name, _, _ in _HANDSHAKE_FIELDS}
        if values["tactics_payload"] is not None:
            values["tactics_payload"] = members["tactics_payload"][1].encode("utf-8")
    kwargs = {}
    for name, _, kind in _HANDSHAKE_FIELDS:
        if values[name] is not None:
            kwargs[name] = _response_value(name, kind, values[name])
    return HandshakeResponse(**kwargs)


def _response_value(name: str, kind: str, value: Any) -> Any:
    """Check one decoded handshake response field against its Go type."""
    ok = {
        "str": lambda: isinstance(value, str),
        "strs": lambda: is_string_list(value),
        "maps": lambda: isinstance(value, list) and all(
            isinstance(m, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in m.items())
            for m in value),
        "raw": lambda: isinstance(value, bytes),
        "int32": lambda: type(value) is int and _INT32[0] <= value <= _INT32[1],
        "int64": lambda: type(value) is int and _INT64[0] <= value <= _INT64[1],
    }[kind]()
    if not ok:
        raise RemoteProtocolError(APIReason.INVALID_HANDSHAKE_RESPONSE, f"{name}: unexpected {type(value).__name__}")
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class ConnectedResponse:
    """Answer to ``psiphon-connected``: the timestamp the client stores as last_connected."""

    connected_timestamp: str
    padding: str = ""


@dataclass(frozen=True)
class StatusResponse:
    """Answer to ``psiphon-status``: server entry tags the client should prune."""

    invalid_server_entry_tags: tuple[str, ...] = ()
    padding: str = ""


def encode_connected_response(resp: ConnectedResponse) -> bytes:
    return go_json_object([("connected_timestamp", resp.connected_timestamp),
                           ("padding", resp.padding)]).encode("utf-8")


def encode_status_response(resp: StatusResponse) -> bytes:
    return go_json_object([("invalid_server_entry_tags", list(resp.invalid_server_entry_tags)),
                           ("padding", resp.padding)]).encode("utf-8")


def decode_connected_response(payload: bytes) -> ConnectedResponse:
    obj = parse_json_object(payload, "connected_response")
    is_str = lambda v: isinstance(v, str)  # noqa: E731
    return ConnectedResponse(member(obj, "connected_timestamp", is_str, "connected_response") or "",
                             member(obj, "padding", is_str, "connected_response") or "")


def decode_status_response(payload: bytes) -> StatusResponse:
    obj = parse_json_object(payload, "status_response")
    tags = member(obj, "invalid_server_entry_tags", is_string_list, "status_response") or []
    padding = member(obj, "padding", lambda v: isinstance(v, str), "status_response") or ""
    return StatusResponse(tuple(tags), padding)
