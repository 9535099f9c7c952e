"""Every wire name of Psiphon's client <-> server API, and the API's payload encodings.

After SSH authentication a client calls the server with SSH global requests
(``psiphon-handshake``, ``psiphon-connected``, ``psiphon-status``). A request payload is
either a JSON object of parameters or the "packed" form: ``00 01`` then a canonical CBOR
map with integer keys and compacted values (``PACKED_PARAMETERS``). Responses are JSON,
except a handshake response to a request with ``psiphon_api_response_version`` = "1",
which is CBOR with integer keys. The SSH password itself is a small JSON document.

JSON is written exactly as Go's ``encoding/json`` writes it (map keys sorted, no spaces,
``< > &`` and U+2028/2029 escaped), so payloads match Psiphon's byte for byte. Decoders
raise ``RemoteProtocolError`` for bad peer input; encoders raise ``LocalProtocolError``
for values we should never have produced.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Collection, Mapping

from onehop.core.cbor import dumps as cbor_dumps
from onehop.core.cbor import loads as cbor_loads
from onehop.errors import LocalProtocolError, RemoteProtocolError

# ------------------------------------------------------------------------ wire names

REQUEST_HANDSHAKE = "psiphon-handshake"
REQUEST_CONNECTED = "psiphon-connected"
REQUEST_STATUS = "psiphon-status"
REQUEST_CLIENT_VERIFICATION = "psiphon-client-verification"  # legacy no-op
REQUEST_DSL = "psiphon-dsl"
SERVER_REQUEST_OSL = "psiphon-osl"  # server -> client, needs CLIENT_CAPABILITY_SERVER_REQUESTS
SERVER_REQUEST_ALERT = "psiphon-alert"

CAPABILITY_SSH_API_REQUESTS = "ssh-api-requests"  # server entry capability
CLIENT_CAPABILITY_SERVER_REQUESTS = "server-requests"  # SSH password ClientCapabilities

PARAM_AUTHORIZATIONS = "authorizations"
PARAM_PROPAGATION_CHANNEL_ID = "propagation_channel_id"
PARAM_SPONSOR_ID = "sponsor_id"
PARAM_CLIENT_VERSION = "client_version"
PARAM_CLIENT_PLATFORM = "client_platform"
PARAM_CLIENT_FEATURES = "client_features"
PARAM_CLIENT_BUILD_REV = "client_build_rev"
PARAM_SESSION_ID = "session_id"
PARAM_RELAY_PROTOCOL = "relay_protocol"
PARAM_SSH_CLIENT_VERSION = "ssh_client_version"
PARAM_DEVICE_REGION = "device_region"
PARAM_EGRESS_REGION = "egress_region"
PARAM_NETWORK_TYPE = "network_type"
PARAM_APPLIED_TACTICS_TAG = "applied_tactics_tag"
PARAM_STORED_TACTICS_TAG = "stored_tactics_tag"
PARAM_SPEED_TEST_SAMPLES = "speed_test_samples"
PARAM_SPLIT_TUNNEL = "split_tunnel"
PARAM_SPLIT_TUNNEL_REGIONS = "split_tunnel_regions"
PARAM_PADDING = "padding"
PARAM_PAD_RESPONSE = "pad_response"
PARAM_LAST_CONNECTED = "last_connected"
PARAM_ESTABLISHMENT_DURATION = "establishment_duration"
PARAM_STATUS_DATA = "statusData"
PARAM_PSIPHON_API_RESPONSE_VERSION = "psiphon_api_response_version"

PACKED_PAYLOAD_PREFIX = b"\x00\x01"  # distinguisher 0x00 (never starts JSON), version 1
API_RESPONSE_VERSION_CBOR = "1"
MAX_PAD_RESPONSE = 16384

PLATFORM_ANDROID, PLATFORM_IOS, PLATFORM_WINDOWS, PLATFORM_OTHER = "Android", "iOS", "Windows", "Other"

_DIRECT_PROTOCOLS = (
    "SSH", "OSSH", "TLS-OSSH", "UNFRONTED-MEEK-OSSH", "UNFRONTED-MEEK-HTTPS-OSSH",
    "UNFRONTED-MEEK-SESSION-TICKET-OSSH", "FRONTED-MEEK-OSSH", "FRONTED-MEEK-HTTP-OSSH",
    "QUIC-OSSH", "FRONTED-MEEK-QUIC-OSSH", "SHADOWSOCKS-OSSH",
)
KNOWN_TUNNEL_PROTOCOLS = frozenset(
    _DIRECT_PROTOCOLS + ("TAPDANCE-OSSH", "CONJURE-OSSH")
    + tuple("INPROXY-WEBRTC-" + name for name in _DIRECT_PROTOCOLS)
)

# ------------------------------------------------------------- packed parameter table

CONV_NONE, CONV_INT, CONV_FLOAT = "", "int", "float"
CONV_LOWERHEX, CONV_UPPERHEX, CONV_BASE64, CONV_RAW_BASE64 = "lowerhex", "upperhex", "base64", "rawbase64"
CONV_AUTHORIZATIONS, CONV_RAW_JSON = "authorizations", "json"

# "key name[:converter]" from psiphon/common/protocol/packed.go. Keys 78-121, 135-138,
# 143-144 and 154-166 (in-proxy and liveness metrics) are not listed: their names are not
# in our reference, so decoding ignores them and encoding refuses their names.
_PACKED_TABLE = """
  1 authorizations:authorizations  2 stored_tactics_tag:lowerhex  3 speed_test_samples
  4 applied_tactics_tag:lowerhex  5 client_session_id:lowerhex  6 propagation_channel_id:upperhex
  7 sponsor_id:upperhex  8 client_version:int  9 client_platform  10 client_features
  11 client_build_rev  12 device_region  13 device_location  14 session_id:lowerhex
  15 relay_protocol  16 ssh_client_version  17 upstream_proxy_type
  18 upstream_proxy_custom_header_names  19 fronting_provider_id:upperhex  20 meek_dial_address
  21 meek_resolved_ip_address  22 meek_sni_server_name  23 meek_host_header
  24 meek_transformed_host_name:int  25 user_agent  26 tls_profile  27 tls_version
  28 server_entry_region  29 server_entry_source  30 server_entry_timestamp
  31 dial_port_number:int  32 quic_version  33 quic_dial_sni_address
  34 quic_disable_client_path_mtu_discovery:int  35 upstream_bytes_fragmented:int
  36 upstream_min_bytes_written:int  37 upstream_max_bytes_written:int
  38 upstream_min_delayed:int  39 upstream_max_delayed:int  40 padding  41 pad_response:int
  42 is_replay:int  43 egress_region  44 dial_duration:int  45 candidate_number:int
  46 established_tunnels_count:int  47 upstream_ossh_padding:int  48 meek_cookie_size:int
  49 meek_limit_request:int  50 meek_redial_probability:float  51 meek_tls_padding:int
  52 network_latency_multiplier:float  53 client_bpf  54 network_type  55 conjure_cached
  56 conjure_delay  57 conjure_transport  58 conjure_prefix  59 conjure_stun
  60 conjure_empty_packet:int  61 conjure_network  62 conjure_port_number:int  63 split_tunnel
  64 split_tunnel_regions  65 dns_preresolved  66 dns_preferred  67 dns_transform
  68 dns_attempt:int  69 http_transform  70 seed_transform  71 ossh_prefix  72 tls_fragmented:int
  73 tls_padding:int  74 tls_ossh_sni_server_name  75 tls_ossh_transformed_host_name:int
  76 inproxy_connection_id:rawbase64  77 inproxy_relay_packet:rawbase64
  122 missing_server_entry_signature:base64  123 missing_server_entry_provider_id:base64
  124 last_connected  125 establishment_duration:int  126 client_download_timestamp
  127 tunneled:int  128 url  129 etag  130 bytes:int  131 duration:int
  132 server_entry_tag:base64  133 client_failed_timestamp  134 record_probability:float
  139 bytes_up:int  140 bytes_down:int  141 tunnel_error  142 statusData:json
  145 tls_sent_ticket:int  146 tls_did_resume:int  147 quic_sent_ticket:int
  148 quic_did_resume:int  149 quic_dial_early:int  150 quic_obfuscated_psk:int
  151 dns_qname_random_casing:int  152 dns_qname_must_match:int  153 dns_qname_mismatches:int
  167 shadowsocks_prefix  168 psiphon_api_response_version:int  169 server_entry_count:int
  170 replay_ignored_change:int  171 dsl_prioritized:int
"""


@dataclass(frozen=True)
class PackedParameter:
    """One row of the packed table: CBOR integer key, parameter name, value converter."""

    key: int
    name: str
    converter: str = CONV_NONE


def _parse_packed_table(text: str) -> tuple[PackedParameter, ...]:
    tokens = text.split()
    rows = []
    for key, spec in zip(tokens[::2], tokens[1::2]):
        name, _, converter = spec.partition(":")
        rows.append(PackedParameter(int(key), name, converter))
    return tuple(rows)


PACKED_PARAMETERS = _parse_packed_table(_PACKED_TABLE)
PACKED_BY_NAME = {p.name: p for p in PACKED_PARAMETERS}
PACKED_BY_KEY = {p.key: p for p in PACKED_PARAMETERS}

# ------------------------------------------------------------ Go encoding/json subset

_GO_HTML_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                                  "\u2028": "\\u2028", "\u2029": "\\u2029"})
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[ \t\n\r]+', re.S)
_JSON_WS = re.compile(r"[ \t\n\r]*")


def _go_json_str(text: str) -> str:
    """A JSON string as Go writes it (invalid UTF-16 becomes U+FFFD, as Go does)."""
    return json.dumps(_LONE_SURROGATE.sub("\ufffd", text), ensure_ascii=False).translate(_GO_HTML_ESCAPES)


def _go_float(x: float) -> str:
    """Go's float64 JSON form: shortest digits, exponent only outside [1e-6, 1e21)."""
    if x != x or x in (float("inf"), float("-inf")):
        raise LocalProtocolError("json_unsupported_value", repr(x))
    if x == 0 or 1e-6 <= abs(x) < 1e21:
        return format(Decimal(repr(x)).normalize(), "f")
    text = repr(x)
    return re.sub(r"e-0(\d)$", r"e-\1", text)


def _go_compact(raw: bytes) -> str:
    """Embed raw JSON like Go does for json.RawMessage: validated, compacted, HTML-escaped."""
    text = _parse_json_text(raw, "raw_json", LocalProtocolError)[1]
    return _JSON_TOKEN.sub(lambda m: m[0].translate(_GO_HTML_ESCAPES) if m[0][0] == '"' else "", text)


def _go_json(value: Any) -> str:
    """Go encoding/json of a JSON-like value; dict keys sorted, bytes taken as raw JSON."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return _go_json_str(value)
    if isinstance(value, (bytes, bytearray)):
        return _go_compact(bytes(value))
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_go_json(item) for item in value) + "]"
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return _go_json_object(sorted(value.items()))
    raise LocalProtocolError("json_unsupported_value", type(value).__name__)


def _go_json_object(pairs: list[tuple[str, Any]]) -> str:
    """A JSON object with members in the given order (Go struct field order)."""
    return "{" + ",".join(f"{_go_json_str(k)}:{_go_json(v)}" for k, v in pairs) + "}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:32]} out of range")
    return value


_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float)


def _parse_json_text(payload: bytes | str, what: str, error: type = RemoteProtocolError) -> tuple[Any, str]:
    """Strictly parse UTF-8 JSON (no NaN/Infinity); returns (value, text)."""
    try:
        text = payload if isinstance(payload, str) else bytes(payload).decode("utf-8")
        return _JSON_DECODER.decode(text), text
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(f"invalid_{what}", str(exc)[:200]) from None


def _parse_json_object(payload: bytes | str, what: str) -> dict:
    value = _parse_json_text(payload, what)[0]
    if not isinstance(value, dict):
        raise RemoteProtocolError(f"invalid_{what}", "not a JSON object")
    return value


def _json_members(payload: bytes, what: str) -> dict[str, tuple[Any, str]]:
    """Top-level members of a JSON object as name -> (value, raw text); last one wins."""
    text = _parse_json_text(payload, what)[1]
    members: dict[str, tuple[Any, str]] = {}
    pos = _JSON_WS.match(text, 0).end()
    if text[pos:pos + 1] != "{":
        raise RemoteProtocolError(f"invalid_{what}", "not a JSON object")
    pos = _JSON_WS.match(text, pos + 1).end()
    while text[pos:pos + 1] != "}":
        name, pos = _JSON_DECODER.raw_decode(text, pos)  # text is known-valid JSON
        start = _JSON_WS.match(text, _JSON_WS.match(text, pos).end() + 1).end()  # past ':'
        value, pos = _JSON_DECODER.raw_decode(text, start)
        members[name] = (value, text[start:pos])
        pos = _JSON_WS.match(text, pos).end()
        if text[pos] == ",":
            pos = _JSON_WS.match(text, pos + 1).end()
    return members


# ---------------------------------------------------------------- value converters


class _BadValue(ValueError):
    """A parameter value does not fit its converter (mapped to Local/Remote errors)."""


_DECIMAL = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX_BYTES = re.compile(r"(?:[0-9a-fA-F]{2})*")
_HEX = re.compile(r"[0-9a-fA-F]+")


def _pack_int(value: Any) -> int:
    if isinstance(value, str) and len(value) <= 20 and _DECIMAL.fullmatch(value) and -(1 << 63) <= int(value) < 1 << 63:
        return int(value)
    raise _BadValue("expected a decimal integer string")


def _pack_float(value: Any) -> float:
    if isinstance(value, str) and _FLOAT.fullmatch(value) and abs(float(value)) != float("inf"):
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise _BadValue("expected a decimal number")


def _pack_hex(value: Any) -> bytes:
    if isinstance(value, str) and _HEX_BYTES.fullmatch(value):
        return bytes.fromhex(value)
    raise _BadValue("expected an even-length hex string")


def _pack_base64(value: Any, padded: bool = True) -> bytes:
    if isinstance(value, str) and (padded or "=" not in value):
        try:
            return base64.b64decode(value + ("" if padded else "=" * (-len(value) % 4)), validate=True)
        except (binascii.Error, ValueError):
            pass
    raise _BadValue("expected standard base64" + ("" if padded else " without padding"))


def _pack_authorizations(value: Any) -> bytes:
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return cbor_dumps(list(value))
    raise _BadValue("expected a list of base64 strings")


def _pack_raw_json(value: Any) -> bytes:
    """``bytes`` are raw JSON text (validated, kept as is); other values are serialised."""
    if isinstance(value, (bytes, bytearray)):
        _parse_json_text(bytes(value), "raw_json", LocalProtocolError)
        return bytes(value)
    return _go_json(value).encode("utf-8")


def _unpack_passthrough(value: Any, depth: int = 0) -> Any:
    """Accept only values that JSON can carry, so decoded params are JSON-like."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, list) and depth < 16:
        return [_unpack_passthrough(item, depth + 1) for item in value]
    if isinstance(value, dict) and depth < 16 and all(isinstance(key, str) for key in value):
        return {key: _unpack_passthrough(item, depth + 1) for key, item in value.items()}
    raise _BadValue(f"unexpected {type(value).__name__} value")


def _unpack_int(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _BadValue("expected a CBOR integer")


def _unpack_float(value: Any) -> str:
    """Format like Go's ``%f``: six decimals, NaN and +Inf/-Inf spelled Go's way."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadValue("expected a CBOR float")
    value = float(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.6f}"


def _unpack_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    raise _BadValue("expected a CBOR byte string")


def _unpack_authorizations(value: Any) -> list[str]:
    items = cbor_loads(_unpack_bytes(value))
    if not isinstance(items, list):
        raise _BadValue("packed authorizations are not an array")
    if not all(isinstance(item, (str, bytes)) for item in items):
        raise _BadValue("packed authorization is not a string")
    return [item if isinstance(item, str) else base64.b64encode(item).decode() for item in items]


def _unpack_raw_json(value: Any) -> Any:
    return _parse_json_text(_unpack_bytes(value), "status_data")[0]


_CONVERTERS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    CONV_NONE: (lambda v: v, _unpack_passthrough),
    CONV_INT: (_pack_int, _unpack_int),
    CONV_FLOAT: (_pack_float, _unpack_float),
    CONV_LOWERHEX: (_pack_hex, lambda v: _unpack_bytes(v).hex()),
    CONV_UPPERHEX: (_pack_hex, lambda v: _unpack_bytes(v).hex().upper()),
    CONV_BASE64: (_pack_base64, lambda v: base64.b64encode(_unpack_bytes(v)).decode()),
    CONV_RAW_BASE64: (lambda v: _pack_base64(v, padded=False),
                      lambda v: base64.b64encode(_unpack_bytes(v)).decode().rstrip("=")),
    CONV_AUTHORIZATIONS: (_pack_authorizations, _unpack_authorizations),
    CONV_RAW_JSON: (_pack_raw_json, _unpack_raw_json),
}


def pack_value(name: str, value: Any) -> tuple[int, Any]:
    """(key, CBOR-ready value) of one parameter; ``LocalProtocolError`` if it does not fit."""
    spec = PACKED_BY_NAME.get(name)
    if spec is None:
        raise LocalProtocolError("unknown_api_parameter", f"{name!r} has no packed key")
    try:
        return spec.key, _CONVERTERS[spec.converter][0](value)
    except _BadValue as exc:
        raise LocalProtocolError("bad_api_parameter", f"{name}: {exc}") from None


def unpack_value(key: int, value: Any) -> tuple[str, Any] | None:
    """(name, string form) of one packed entry; ``None`` for keys we do not know."""
    spec = PACKED_BY_KEY.get(key) if isinstance(key, int) else None
    if spec is None:
        return None
    try:
        return spec.name, _CONVERTERS[spec.converter][1](value)
    except _BadValue as exc:
        raise RemoteProtocolError("bad_packed_value", f"{spec.name}: {exc}") from None


# ------------------------------------------------------------------ request payloads


def encode_request_params(params: Mapping[str, Any], packed: bool) -> bytes:
    """A request payload: Go JSON of the map (keys sorted), or ``00 01`` + canonical CBOR."""
    if not packed:
        return _go_json(dict(params)).encode("utf-8")
    return PACKED_PAYLOAD_PREFIX + cbor_dumps(dict(pack_value(name, value) for name, value in params.items()))


def decode_request_params(payload: bytes) -> dict[str, Any]:
    """Parameters from a JSON or packed payload, as the server sees them.

    Values are strings, or lists of strings for list parameters; ``speed_test_samples``
    is a list of objects and ``statusData`` a parsed JSON value. Unknown packed keys are
    ignored, as Go does.
    """
    payload = bytes(payload)
    if not payload.startswith(b"\x00"):
        return _parse_json_object(payload, "request_params")
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
    if not isinstance(value, str) or len(value) > 20 or not _DECIMAL.fullmatch(value):
        return 0  # Go's Atoi fails on these, and an unparsable value means no padding
    return max(0, min(int(value), MAX_PAD_RESPONSE))


_STRING_LIST_PARAMS = frozenset({PARAM_CLIENT_FEATURES, PARAM_SPLIT_TUNNEL_REGIONS, PARAM_AUTHORIZATIONS})


def _is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _optional_param_ok(name: str, value: Any) -> bool:
    if name in _STRING_LIST_PARAMS:
        return _is_string_list(value)
    if name == "upstream_proxy_custom_header_names":
        return isinstance(value, str) or _is_string_list(value)
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
        PARAM_PROPAGATION_CHANNEL_ID: lambda v: bool(_HEX.fullmatch(v)),
        PARAM_SPONSOR_ID: lambda v: bool(_HEX.fullmatch(v)),
        PARAM_CLIENT_VERSION: lambda v: bool(_DECIMAL.fullmatch(v)),
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


# ----------------------------------------------------------------- response payloads

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
    return _go_json_object([(name, value) for name, _, value in present]).encode("utf-8")


def decode_handshake_response(payload: bytes) -> HandshakeResponse:
    """Parse a JSON or CBOR (integer-keyed) handshake response; unknown fields are ignored."""
    payload = bytes(payload)
    if payload[:1] and payload[0] >> 5 == 5:  # CBOR major type 5: a map
        found = cbor_loads(payload)
        values = {name: found.get(key) for name, key, _ in _HANDSHAKE_FIELDS}
    else:
        members = _json_members(payload, "handshake_response")
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
        "strs": lambda: _is_string_list(value),
        "maps": lambda: isinstance(value, list) and all(
            isinstance(m, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in m.items())
            for m in value),
        "raw": lambda: isinstance(value, bytes),
        "int32": lambda: type(value) is int and _INT32[0] <= value <= _INT32[1],
        "int64": lambda: type(value) is int and _INT64[0] <= value <= _INT64[1],
    }[kind]()
    if not ok:
        raise RemoteProtocolError("invalid_handshake_response", f"{name}: unexpected {type(value).__name__}")
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
    return _go_json_object([("connected_timestamp", resp.connected_timestamp),
                            ("padding", resp.padding)]).encode("utf-8")


def encode_status_response(resp: StatusResponse) -> bytes:
    return _go_json_object([("invalid_server_entry_tags", list(resp.invalid_server_entry_tags)),
                            ("padding", resp.padding)]).encode("utf-8")


def _member(obj: dict, name: str, check: Callable[[Any], bool], what: str) -> Any:
    """A JSON member that must pass ``check``; missing and null read as ``None``."""
    value = obj.get(name)
    if value is not None and not check(value):
        raise RemoteProtocolError(f"invalid_{what}", f"{name}: unexpected {type(value).__name__}")
    return value


def decode_connected_response(payload: bytes) -> ConnectedResponse:
    obj = _parse_json_object(payload, "connected_response")
    is_str = lambda v: isinstance(v, str)  # noqa: E731
    return ConnectedResponse(_member(obj, "connected_timestamp", is_str, "connected_response") or "",
                             _member(obj, "padding", is_str, "connected_response") or "")


def decode_status_response(payload: bytes) -> StatusResponse:
    obj = _parse_json_object(payload, "status_response")
    tags = _member(obj, "invalid_server_entry_tags", _is_string_list, "status_response") or []
    padding = _member(obj, "padding", lambda v: isinstance(v, str), "status_response") or ""
    return StatusResponse(tuple(tags), padding)


# -------------------------------------------------------------------- SSH password

SESSION_ID_LENGTH = 32  # hex chars (16 random bytes)
SPONSOR_ID_LENGTH = 16  # hex chars
_LEGACY_PASSWORD_LENGTH = 64


@dataclass(frozen=True)
class SSHPasswordPayload:
    """What the client sends as its SSH password; ``sponsor_id`` None (or "") = absent."""

    session_id: str
    ssh_password: str
    client_capabilities: tuple[str, ...] = ()
    sponsor_id: str | None = None


def _password_problem(session_id: str, sponsor_id: str | None) -> str | None:
    if len(session_id) != SESSION_ID_LENGTH or not _HEX.fullmatch(session_id):
        return f"session id must be {SESSION_ID_LENGTH} hex chars"
    if sponsor_id and (len(sponsor_id) != SPONSOR_ID_LENGTH or not _HEX.fullmatch(sponsor_id)):
        return f"sponsor id must be {SPONSOR_ID_LENGTH} hex chars"
    return None


def encode_ssh_password(payload: SSHPasswordPayload) -> str:
    """The JSON password: SessionId, SshPassword, ClientCapabilities[, SponsorId]."""
    problem = _password_problem(payload.session_id, payload.sponsor_id)
    if problem:
        raise LocalProtocolError("bad_ssh_password_payload", problem)
    pairs = [("SessionId", payload.session_id), ("SshPassword", payload.ssh_password),
             ("ClientCapabilities", list(payload.client_capabilities))]
    if payload.sponsor_id:
        pairs.append(("SponsorId", payload.sponsor_id))
    return _go_json_object(pairs)


def parse_ssh_password(text: str | bytes) -> SSHPasswordPayload:
    """Parse the JSON password, or the legacy 32-char session id + 64-char password."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError("invalid_ssh_password_payload", "not UTF-8") from None
    if text.lstrip(" \t\r\n").startswith("{"):
        payload = _parse_password_json(text)
    elif len(text) == SESSION_ID_LENGTH + _LEGACY_PASSWORD_LENGTH:
        payload = SSHPasswordPayload(text[:SESSION_ID_LENGTH], text[SESSION_ID_LENGTH:])
    else:
        raise RemoteProtocolError("invalid_ssh_password_payload", "neither JSON nor the legacy form")
    problem = _password_problem(payload.session_id, payload.sponsor_id)
    if problem:
        raise RemoteProtocolError("invalid_ssh_password_payload", problem)
    return payload


def _parse_password_json(text: str) -> SSHPasswordPayload:
    obj = _parse_json_object(text, "ssh_password_payload")
    is_str = lambda v: isinstance(v, str)  # noqa: E731
    what = "ssh_password_payload"
    capabilities = _member(obj, "ClientCapabilities", _is_string_list, what) or []
    return SSHPasswordPayload(
        session_id=_member(obj, "SessionId", is_str, what) or "",
        ssh_password=_member(obj, "SshPassword", is_str, what) or "",
        client_capabilities=tuple(capabilities),
        sponsor_id=_member(obj, "SponsorId", is_str, what) or None,
    )
