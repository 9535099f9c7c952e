"""API request payloads: encoding and decoding parameters, and what the server reads from them.

A payload is a Go-JSON object of parameters or ``00 01`` + the canonical CBOR packed map.
The rest reads decoded parameters the way Psiphon's server does: request validation (the
lists live in ``params``), response padding and the platform class. ``records`` builds the
typed request records on these.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Collection, Mapping

from onehop.core.cbor import dumps as cbor_dumps
from onehop.core.cbor import loads as cbor_loads
from onehop.errors import APIReason, RemoteProtocolError

from .gojson import go_json, is_string_list, parse_json_object
from .names import (
    DECIMAL, MAX_PAD_RESPONSE, PACKED_PAYLOAD_PREFIX, PARAM_AUTHORIZATIONS, PARAM_PAD_RESPONSE,
    PARAM_STATUS_DATA, PLATFORM_ANDROID, PLATFORM_IOS, PLATFORM_OTHER, PLATFORM_WINDOWS,
)
from .packed import pack_value, unpack_value
from .params import CONNECTED_PARAMS, HANDSHAKE_PARAMS, STATUS_PARAMS, param_problems


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
        return _without_nulls(parse_json_object(payload, "request_params"))
    if not payload.startswith(PACKED_PAYLOAD_PREFIX):
        raise RemoteProtocolError(APIReason.UNSUPPORTED_PACKED_VERSION, payload[1:2].hex() or "missing version")
    packed = cbor_loads(payload[len(PACKED_PAYLOAD_PREFIX):])
    if not isinstance(packed, dict):
        raise RemoteProtocolError(APIReason.INVALID_REQUEST_PARAMS, "packed payload is not a map")
    params = {}
    for key, value in packed.items():
        entry = unpack_value(key, value)
        if entry is not None:
            params[entry[0]] = entry[1]
    return _without_nulls(params)


def _without_nulls(params: dict[str, Any]) -> dict[str, Any]:
    """Drop null parameters: Go writes a nil slice or map as null, and psiphond reads
    ``params[name] == nil`` as absent, so a null optional parameter is no parameter."""
    return {name: value for name, value in params.items() if value is not None}


def normalize_client_platform(client_platform: str) -> str:
    """Psiphon's platform class: Android, iOS, Windows or Other."""
    if "android" in client_platform.lower():
        return PLATFORM_ANDROID
    if client_platform.startswith("iOS"):
        return PLATFORM_IOS
    if client_platform.startswith("Windows"):
        return PLATFORM_WINDOWS
    return PLATFORM_OTHER


def pad_response_length(params: Mapping[str, Any]) -> int:
    """Spaces of response padding the client asked for, capped at ``MAX_PAD_RESPONSE``."""
    value = params.get(PARAM_PAD_RESPONSE)
    if not isinstance(value, str) or len(value) > 20 or not DECIMAL.fullmatch(value):
        return 0  # Go's Atoi fails on these, and an unparsable value means no padding
    return max(0, min(int(value), MAX_PAD_RESPONSE))


# ------------------------------------------------------------- parameter checks


def handshake_param_problems(params: Mapping[str, Any],
                             relay_protocols: Collection[str] | None = None) -> list[str]:
    """Every problem with handshake parameters (empty list = valid), as psiphond checks them.

    ``relay_protocols`` are the protocols this server runs (default: every known name).
    Parameters psiphond does not check are ignored; null counts as absent.
    """
    problems = param_problems(params, HANDSHAKE_PARAMS, relay_protocols)
    authorizations = params.get(PARAM_AUTHORIZATIONS)
    if authorizations is not None and not is_string_list(authorizations):
        problems.append(f"{PARAM_AUTHORIZATIONS}: not a list of strings")
    return problems


def connected_param_problems(params: Mapping[str, Any]) -> list[str]:
    """Every problem with ``psiphon-connected`` parameters, as psiphond checks them."""
    return param_problems(params, CONNECTED_PARAMS)


def status_param_problems(params: Mapping[str, Any]) -> list[str]:
    """Every problem with ``psiphon-status`` parameters: the base set and a statusData object."""
    problems = param_problems(params, STATUS_PARAMS)
    status_data = params.get(PARAM_STATUS_DATA)
    if status_data is None:
        problems.append(f"{PARAM_STATUS_DATA}: missing")
    elif not isinstance(status_data, dict):
        problems.append(f"{PARAM_STATUS_DATA}: not a JSON object")
    return problems
