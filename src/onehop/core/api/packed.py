"""The packed (CBOR, integer-keyed) form of API parameters: the key table and its converters.

``pack_value`` turns one parameter (a string, or a list for list parameters) into its
CBOR integer key and compact value; ``unpack_value`` turns a received entry back into the
string form the Go server sees. Bad values of ours raise ``LocalProtocolError``, bad peer
values ``RemoteProtocolError``.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

from onehop.core.cbor import dumps as cbor_dumps
from onehop.core.cbor import loads as cbor_loads
from onehop.errors import APIReason, LocalProtocolError, RemoteProtocolError

from .gojson import go_json, parse_json_text
from .names import DECIMAL

CONV_NONE, CONV_INT, CONV_FLOAT = "", "int", "float"
CONV_LOWERHEX, CONV_UPPERHEX, CONV_BASE64, CONV_RAW_BASE64 = "lowerhex", "upperhex", "base64", "rawbase64"
CONV_AUTHORIZATIONS, CONV_RAW_JSON = "authorizations", "json"

# "key name[:converter]" for every key 1-171 of psiphon/common/protocol/packed.go, in key
# order. Psiphon never reorders or reuses a key, so keys the peer sends past 171 are from a
# newer Psiphon: decoding ignores them and encoding refuses names not listed here.
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
  78 inproxy_broker_is_replay:int  79 inproxy_broker_transport
  80 inproxy_broker_fronting_provider_id:upperhex  81 inproxy_broker_dial_address
  82 inproxy_broker_resolved_ip_address  83 inproxy_broker_sni_server_name
  84 inproxy_broker_host_header  85 inproxy_broker_transformed_host_name:int
  86 inproxy_broker_user_agent  87 inproxy_broker_tls_profile  88 inproxy_broker_tls_version
  89 inproxy_broker_tls_fragmented:int  90 inproxy_broker_tls_padding:int
  91 inproxy_broker_client_bpf  92 inproxy_broker_upstream_bytes_fragmented:int
  93 inproxy_broker_upstream_min_bytes_written:int  94 inproxy_broker_upstream_max_bytes_written:int
  95 inproxy_broker_upstream_min_delayed:int  96 inproxy_broker_upstream_max_delayed:int
  97 inproxy_broker_http_transform  98 inproxy_broker_dns_preresolved
  99 inproxy_broker_dns_preferred  100 inproxy_broker_dns_transform
  101 inproxy_broker_dns_attempt:int  102 inproxy_webrtc_dns_preresolved
  103 inproxy_webrtc_dns_preferred  104 inproxy_webrtc_dns_transform
  105 inproxy_webrtc_dns_attempt:int  106 inproxy_webrtc_stun_server
  107 inproxy_webrtc_stun_server_resolved_ip_address  108 inproxy_webrtc_stun_server_RFC5780
  109 inproxy_webrtc_stun_server_RFC5780_resolved_ip_address  110 inproxy_webrtc_randomize_dtls:int
  111 inproxy_webrtc_padded_messages_sent:int  112 inproxy_webrtc_padded_messages_received:int
  113 inproxy_webrtc_decoy_messages_sent:int  114 inproxy_webrtc_decoy_messages_received:int
  115 inproxy_webrtc_local_ice_candidate_type  116 inproxy_webrtc_local_ice_candidate_is_initiator:int
  117 inproxy_webrtc_local_ice_candidate_is_IPv6:int  118 inproxy_webrtc_local_ice_candidate_port:int
  119 inproxy_webrtc_remote_ice_candidate_type  120 inproxy_webrtc_remote_ice_candidate_is_IPv6:int
  121 inproxy_webrtc_remote_ice_candidate_port:int
  122 missing_server_entry_signature:base64  123 missing_server_entry_provider_id:base64
  124 last_connected  125 establishment_duration:int  126 client_download_timestamp
  127 tunneled:int  128 url  129 etag  130 bytes:int  131 duration:int
  132 server_entry_tag:base64  133 client_failed_timestamp  134 record_probability:float
  135 liveness_test_upstream_bytes:int  136 liveness_test_sent_upstream_bytes:int
  137 liveness_test_downstream_bytes:int  138 liveness_test_received_downstream_bytes:int
  139 bytes_up:int  140 bytes_down:int  141 tunnel_error  142 statusData:json
  143 inproxy_webrtc_local_ice_candidate_is_private_IP:int
  144 inproxy_webrtc_remote_ice_candidate_is_private_IP:int
  145 tls_sent_ticket:int  146 tls_did_resume:int  147 quic_sent_ticket:int
  148 quic_did_resume:int  149 quic_dial_early:int  150 quic_obfuscated_psk:int
  151 dns_qname_random_casing:int  152 dns_qname_must_match:int  153 dns_qname_mismatches:int
  154 inproxy_broker_dns_qname_random_casing:int  155 inproxy_broker_dns_qname_must_match:int
  156 inproxy_broker_dns_qname_mismatches:int  157 inproxy_webrtc_dns_qname_random_casing:int
  158 inproxy_webrtc_dns_qname_must_match:int  159 inproxy_webrtc_dns_qname_mismatches:int
  160 inproxy_dial_nat_discovery_duration:int  161 inproxy_dial_failed_attempts_duration:int
  162 inproxy_dial_webrtc_ice_gathering_duration:int  163 inproxy_dial_broker_offer_duration:int
  164 inproxy_dial_webrtc_connection_duration:int  165 inproxy_broker_is_reuse:int
  166 inproxy_webrtc_use_media_streams:int
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

# ------------------------------------------------------------------------- converters


class _BadValue(ValueError):
    """A parameter value does not fit its converter (mapped to Local/Remote errors)."""


_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX_BYTES = re.compile(r"(?:[0-9a-fA-F]{2})*")


def _pack_int(value: Any) -> int:
    if isinstance(value, str) and len(value) <= 20 and DECIMAL.fullmatch(value) and -(1 << 63) <= int(value) < 1 << 63:
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
        parse_json_text(bytes(value), "raw_json", LocalProtocolError)
        return bytes(value)
    return go_json(value).encode("utf-8")


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
    return parse_json_text(_unpack_bytes(value), "status_data")[0]


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
        raise LocalProtocolError(APIReason.UNKNOWN_API_PARAMETER, f"{name!r} has no packed key")
    try:
        return spec.key, _CONVERTERS[spec.converter][0](value)
    except _BadValue as exc:
        raise LocalProtocolError(APIReason.BAD_API_PARAMETER, f"{name}: {exc}") from None


def unpack_value(key: int, value: Any) -> tuple[str, Any] | None:
    """(name, string form) of one packed entry; ``None`` for keys we do not know."""
    spec = PACKED_BY_KEY.get(key) if isinstance(key, int) else None
    if spec is None:
        return None
    try:
        return spec.name, _CONVERTERS[spec.converter][1](value)
    except _BadValue as exc:
        raise RemoteProtocolError(APIReason.BAD_PACKED_VALUE, f"{spec.name}: {exc}") from None
