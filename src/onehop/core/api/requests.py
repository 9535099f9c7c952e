"""API request payloads: encoding and decoding parameters, and what the server reads from them.

A payload is a Go-JSON object of parameters or ``00 01`` + the canonical CBOR packed map.
The rest reads decoded parameters the way Psiphon's server does: handshake validation,
response padding, the CBOR-response switch and the platform class.
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Mapping

from onehop.core.cbor import dumps as cbor_dumps
from onehop.core.cbor import loads as cbor_loads
from onehop.errors import RemoteProtocolError

from .gojson import go_json, is_string_list, parse_json_object
from .names import (
    API_RESPONSE_VERSION_CBOR, DECIMAL, HEX, KNOWN_TUNNEL_PROTOCOLS, MAX_PAD_RESPONSE,
    PACKED_PAYLOAD_PREFIX, PARAM_AUTHORIZATIONS, PARAM_CLIENT_FEATURES, PARAM_CLIENT_PLATFORM,
    PARAM_CLIENT_VERSION, PARAM_PAD_RESPONSE, PARAM_PROPAGATION_CHANNEL_ID,
    PARAM_PSIPHON_API_RESPONSE_VERSION, PARAM_RELAY_PROTOCOL, PARAM_SPEED_TEST_SAMPLES,
    PARAM_SPLIT_TUNNEL_REGIONS, PARAM_SPONSOR_ID, PARAM_STATUS_DATA, PLATFORM_ANDROID,
    PLATFORM_IOS, PLATFORM_OTHER, PLATFORM_WINDOWS,
)
from .packed import PACKED_BY_NAME, pack_value, unpack_value


def encode_request_params(params: Mapping[str, Any], packed: bool) -> bytes:
    """A request payload: Go JSON of the map (keys sorted), or ``00 01`` + canonical CBOR."""
    if not packed:
        return go_json(dict(params)).encode("utf-8")
    return PACKED_PAYLOAD_PREFIX + cbor_dumps(dict(pack_value(name, value) for name, value in params.items()))


def decode_request_params(payload: bytes) -> dict[str, Any]:
    """Parameters from a JSON or packed payload, as the server sees them.

    Values are strings, or lists of strings for list parameters; ``speed_test_samples``
    is a list of objects and ``statusData`` a parsed JSON value. Unknown packed keys are
    ignored, as Go does.
    """
    payload = bytes(payload)
    if not payload.startswith(b"\x00"):
        return parse_json_object(payload, "request_params")
    if not payload.startswith(PACKED_PAYLOAD_PREFIX):
        raise RemoteProtocolError("unsupported_packed_version", payload[1:2].hex() or "missing version")
    packed = cbor_loads(payload[len(PACKED_PAYLOAD_PREFIX):])
    if not isinstance(packed, dict):
        raise RemoteProtocolError("invalid_request_params", "packed payload is not a map")
    params = {}
    for key, value in packed.items():
        entry = unpack_value(key, value)
        if entry is not None:
            params[entry[0]] = entry[1]
    return params


def normalize_client_platform(client_platform: str) -> str:
    """Psiphon's platform class: Android, iOS, Windows or Other."""
    if "android" in client_platform.lower():
        return PLATFORM_ANDROID
    if client_platform.startswith("iOS"):
        return PLATFORM_IOS
    if client_platform.startswith("Windows"):
        return PLATFORM_WINDOWS
    return PLATFORM_OTHER


def wants_cbor_response(params: Mapping[str, Any]) -> bool:
    """True when the handshake asked for a CBOR response (psiphon_api_response_version "1")."""
    return params.get(PARAM_PSIPHON_API_RESPONSE_VERSION) == API_RESPONSE_VERSION_CBOR


def pad_response_length(params: Mapping[str, Any]) -> int:
    """Spaces of response padding the client asked for, capped at ``MAX_PAD_RESPONSE``."""
    value = params.get(PARAM_PAD_RESPONSE)
    if not isinstance(value, str) or len(value) > 20 or not DECIMAL.fullmatch(value):
        return 0  # Go's Atoi fails on these, and an unparsable value means no padding
    return max(0, min(int(value), MAX_PAD_RESPONSE))


# ------------------------------------------------------------- handshake parameters

_STRING_LIST_PARAMS = frozenset({PARAM_CLIENT_FEATURES, PARAM_SPLIT_TUNNEL_REGIONS, PARAM_AUTHORIZATIONS})


def _optional_param_ok(name: str, value: Any) -> bool:
    if name in _STRING_LIST_PARAMS:
        return is_string_list(value)
    if name == "upstream_proxy_custom_header_names":
        return isinstance(value, str) or is_string_list(value)
    if name == PARAM_SPEED_TEST_SAMPLES:
        return isinstance(value, list) and all(isinstance(item, dict) for item in value)
    if name == PARAM_STATUS_DATA:
        return True
    return isinstance(value, str)


def handshake_param_problems(params: Mapping[str, Any],
                             relay_protocols: Collection[str] | None = None) -> list[str]:
    """Every problem with handshake parameters (empty list = valid), like Psiphon's checks.

    ``relay_protocols`` are the protocols this server runs (default: every known name).
    Parameters outside the packed table are ignored.
    """
    allowed = KNOWN_TUNNEL_PROTOCOLS if relay_protocols is None else relay_protocols
    required: dict[str, Callable[[str], bool]] = {
        PARAM_PROPAGATION_CHANNEL_ID: lambda v: bool(HEX.fullmatch(v)),
        PARAM_SPONSOR_ID: lambda v: bool(HEX.fullmatch(v)),
        PARAM_CLIENT_VERSION: lambda v: bool(DECIMAL.fullmatch(v)),
        PARAM_CLIENT_PLATFORM: lambda v: bool(v) and not any(c.isspace() for c in v),
        PARAM_RELAY_PROTOCOL: lambda v: v in allowed,
    }
    problems = []
    for name, check in required.items():
        value = params.get(name)
        if value is None:
            problems.append(f"{name}: missing")
        elif not isinstance(value, str) or not check(value):
            problems.append(f"{name}: invalid value")
    for name, value in params.items():
        if name not in required and name in PACKED_BY_NAME and not _optional_param_ok(name, value):
            problems.append(f"{name}: wrong type {type(value).__name__}")
    return problems


def validate_handshake_params(params: Mapping[str, Any],
                              relay_protocols: Collection[str] | None = None) -> None:
    """Raise ``RemoteProtocolError('invalid_handshake_params')`` listing every problem."""
    problems = handshake_param_problems(params, relay_protocols)
    if problems:
        raise RemoteProtocolError("invalid_handshake_params", "; ".join(problems))
