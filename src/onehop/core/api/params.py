"""Which request parameters the server checks, and how: psiphond's acceptance rules.

psiphond checks a request against a list of expected parameters. Each is required or
optional, a string, a list of strings or free JSON, and a string must pass the value check
named with it. A parameter that is absent or null (Go reads both as ``nil``) passes when
optional; a parameter that is not on the list is not checked at all. This module holds
those lists for the three requests the server answers (handshake, connected, status) so that
onehop accepts exactly what psiphond accepts.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from collections.abc import Callable, Collection, Mapping

from .names import DECIMAL
from .protocols import KNOWN_TUNNEL_PROTOCOLS

Check = Callable[[str], bool]

# Kinds of value; a string is the default.
STRING, STRING_LIST, JSON = "string", "string-list", "json"


@dataclass(frozen=True)
class ParamSpec:
    name: str
    check: Check
    optional: bool = True
    kind: str = STRING


# ------------------------------------------------------------------ value checks


def any_string(value: str) -> bool:
    return True


def hex_digits(value: str) -> bool:
    """Upper or lower case hex digits; the empty string passes, as in psiphond."""
    return all(c in "0123456789abcdefABCDEF" for c in value)


def sponsor_id(value: str) -> bool:
    return len(value) == 16 and hex_digits(value)


def int_string(value: str) -> bool:
    """What Go's strconv.Atoi accepts (a 64-bit signed decimal)."""
    return bool(DECIMAL.fullmatch(value)) and -2**63 <= int(value) < 2**63


_DECIMAL_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX_FLOAT = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+")
_SPECIAL_FLOAT = re.compile(r"[+-]?(?:inf|infinity)|nan", re.IGNORECASE)


def float_string(value: str) -> bool:
    """What Go's strconv.ParseFloat(value, 64) accepts: no overflow, Inf and NaN spelled out."""
    if _SPECIAL_FLOAT.fullmatch(value):
        return True
    if _DECIMAL_FLOAT.fullmatch(value):
        return not math.isinf(float(value))
    if _HEX_FLOAT.fullmatch(value):
        try:
            return not math.isinf(float.fromhex(value))
        except OverflowError:
            return False
    return False


def client_platform(value: str) -> bool:
    return not any(c.isspace() for c in value)


def boolean_flag(value: str) -> bool:
    return value in ("0", "1")


def region_code(value: str) -> bool:
    return len(value) == 2 and all("A" <= c <= "Z" for c in value)


def upstream_proxy_type(value: str) -> bool:
    return value.lower() in ("http", "socks5", "socks4a")


def ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return "%" not in value  # Go's net.ParseIP rejects zones


_DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def domain(value: str) -> bool:
    """psiphond's check: each label non-empty, not starting or ending with '-', and (its
    regex being anchored only at the end) ending in a letter, digit or hyphen."""
    if len(value.encode()) > 255:
        return False
    labels = value[:-1] if value.endswith(".") else value
    return all(label and label[-1] in _DOMAIN_CHARS and not label.startswith("-")
               and not label.endswith("-") for label in labels.split("."))


def dial_address(value: str) -> bool:
    parts = value.split(":")
    return (len(parts) == 2 and (ip_address(parts[0]) or domain(parts[0]))
            and parts[1].isascii() and parts[1].isdigit() and int_string(parts[1]))


def host_header(value: str) -> bool:
    return dial_address(value) if ":" in value else ip_address(value) or domain(value)


def base64_string(value: str) -> bool:
    """Go's base64.StdEncoding: padded, and CR/LF anywhere are skipped."""
    return _decodes(value.replace("\r", "").replace("\n", ""))


def unpadded_base64_string(value: str) -> bool:
    """Go's base64.RawStdEncoding: no padding at all."""
    value = value.replace("\r", "").replace("\n", "")
    return "=" not in value and len(value) % 4 != 1 and _decodes(value + "=" * (-len(value) % 4))


def _decodes(value: str) -> bool:
    try:
        base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False
    return True


_ISO8601 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:[.,][0-9]+)?(Z|[+-][0-9]{4})")


def iso8601_date(value: str) -> bool:
    """Go's layout ``2006-01-02T15:04:05.999999999Z0700``: Z or a +hhmm offset."""
    match = _ISO8601.fullmatch(value)
    if not match:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    zone = match.group(7)
    return zone == "Z" or (int(zone[1:3]) <= 24 and int(zone[3:]) <= 60)  # Go's range limits


def last_connected(value: str) -> bool:
    return value == "None" or iso8601_date(value)


def geohash(value: str) -> bool:
    return 1 <= len(value) <= 12 and all(c in "0123456789bcdefghjkmnpqrstuvwxyz" for c in value)


_SERVER_ENTRY_SOURCES = ("EMBEDDED", "REMOTE", "DISCOVERY", "TARGET", "OBFUSCATED", "DSL", "TARGET_*")


def server_entry_source(value: str) -> bool:
    return any(value == s or (s.endswith("*") and value.startswith(s[:-1])) for s in _SERVER_ENTRY_SOURCES)


# ---------------------------------------------------------------- the lists

def _specs(check: Check, *names: str) -> tuple[ParamSpec, ...]:
    return tuple(ParamSpec(name, check) for name in names)


BASE_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("propagation_channel_id", hex_digits, optional=False),
    ParamSpec("sponsor_id", sponsor_id, optional=False),
    ParamSpec("client_version", int_string, optional=False),
    ParamSpec("client_platform", client_platform, optional=False),
    ParamSpec("client_features", any_string, kind=STRING_LIST),
    ParamSpec("client_build_rev", hex_digits),
    ParamSpec("device_region", any_string),
    ParamSpec("device_location", geohash),
    ParamSpec("egress_region", region_code),
    ParamSpec("network_type", any_string),
    ParamSpec("applied_tactics_tag", any_string),
    ParamSpec("compress_response", int_string),
)

_DIAL_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("upstream_proxy_type", upstream_proxy_type),
    ParamSpec("upstream_proxy_custom_header_names", any_string, kind=STRING_LIST),
    ParamSpec("meek_dial_address", dial_address),
    ParamSpec("meek_resolved_ip_address", ip_address),
    ParamSpec("meek_sni_server_name", domain),
    ParamSpec("meek_host_header", host_header),
    ParamSpec("server_entry_region", region_code),
    ParamSpec("server_entry_source", server_entry_source),
    ParamSpec("server_entry_timestamp", iso8601_date),
    ParamSpec("tls_ossh_sni_server_name", domain),
    ParamSpec("steering_ip", ip_address),
    ParamSpec("split_tunnel_regions", region_code, kind=STRING_LIST),
    *_specs(any_string,
            "ssh_client_version", "fronting_provider_id", "user_agent", "tls_profile", "tls_version",
            "quic_version", "quic_dial_sni_address", "padding", "dsl_prioritized_reason", "client_bpf",
            "conjure_transport", "conjure_prefix", "conjure_stun", "conjure_network",
            "conjure_port_number", "dns_preresolved", "dns_preferred", "dns_transform",
            "http_transform", "seed_transform", "ossh_prefix", "shadowsocks_prefix",
            "tunnel_personal_light_proxy_id"),
    *_specs(boolean_flag,
            "meek_transformed_host_name", "quic_disable_client_path_mtu_discovery", "is_replay",
            "replay_ignored_change", "dsl_prioritized", "conjure_cached", "conjure_empty_packet",
            "split_tunnel", "dns_qname_random_casing", "dns_qname_must_match", "tls_fragmented",
            "tls_ossh_transformed_host_name", "tls_sent_ticket", "tls_did_resume", "quic_sent_ticket",
            "quic_did_resume", "quic_dial_early", "quic_obfuscated_psk"),
    *_specs(int_string,
            "dial_port_number", "upstream_bytes_fragmented", "upstream_min_bytes_written",
            "upstream_max_bytes_written", "upstream_min_delayed", "upstream_max_delayed",
            "pad_response", "dial_duration", "candidate_number", "established_tunnels_count",
            "upstream_ossh_padding", "meek_cookie_size", "meek_limit_request", "meek_tls_padding",
            "conjure_delay", "dns_qname_mismatches", "dns_attempt", "tls_padding",
            "server_entry_count", "unique_candidate_estimate", "candidates_moved_to_front",
            "first_fronted_meek_candidate"),
    *_specs(float_string, "meek_redial_probability", "network_latency_multiplier"),
)

_INPROXY_DIAL_PARAMS: tuple[ParamSpec, ...] = (
    *_specs(unpadded_base64_string, "inproxy_connection_id", "inproxy_relay_packet"),
    *_specs(any_string,
            "inproxy_broker_transport", "inproxy_broker_fronting_provider_id",
            "inproxy_broker_dial_address", "inproxy_broker_resolved_ip_address",
            "inproxy_broker_sni_server_name", "inproxy_broker_host_header",
            "inproxy_broker_user_agent", "inproxy_broker_tls_profile", "inproxy_broker_tls_version",
            "inproxy_broker_client_bpf", "inproxy_broker_http_transform",
            "inproxy_broker_dns_preresolved", "inproxy_broker_dns_preferred",
            "inproxy_broker_dns_transform", "inproxy_webrtc_dns_preresolved",
            "inproxy_webrtc_dns_preferred", "inproxy_webrtc_dns_transform",
            "inproxy_webrtc_stun_server", "inproxy_webrtc_stun_server_resolved_ip_address",
            "inproxy_webrtc_stun_server_RFC5780",
            "inproxy_webrtc_stun_server_RFC5780_resolved_ip_address",
            "inproxy_webrtc_dtls_fingerprint", "inproxy_proxy_webrtc_dtls_fingerprint",
            "inproxy_webrtc_local_ice_candidate_type", "inproxy_webrtc_remote_ice_candidate_type"),
    *_specs(boolean_flag,
            "inproxy_broker_is_replay", "inproxy_broker_transformed_host_name",
            "inproxy_broker_tls_fragmented", "inproxy_broker_dns_qname_random_casing",
            "inproxy_broker_dns_qname_must_match", "inproxy_webrtc_dns_qname_must_match",
            "inproxy_webrtc_randomize_dtls", "inproxy_webrtc_local_ice_candidate_is_initiator",
            "inproxy_webrtc_local_ice_candidate_is_IPv6",
            "inproxy_webrtc_remote_ice_candidate_is_IPv6", "inproxy_broker_is_reuse",
            "inproxy_webrtc_use_media_streams"),
    *_specs(int_string,
            "inproxy_broker_upstream_bytes_fragmented", "inproxy_broker_dns_qname_mismatches",
            "inproxy_broker_dns_attempt", "inproxy_webrtc_dns_qname_mismatches",
            "inproxy_webrtc_dns_attempt", "inproxy_webrtc_padded_messages_sent",
            "inproxy_webrtc_padded_messages_received", "inproxy_webrtc_decoy_messages_sent",
            "inproxy_webrtc_decoy_messages_received", "inproxy_webrtc_local_ice_candidate_port",
            "inproxy_webrtc_remote_ice_candidate_port", "inproxy_dial_nat_discovery_duration",
            "inproxy_dial_failed_attempts_duration", "inproxy_dial_webrtc_ice_gathering_duration",
            "inproxy_dial_broker_offer_duration", "inproxy_dial_webrtc_connection_duration"),
)

HANDSHAKE_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("missing_server_entry_signature", base64_string),
    ParamSpec("missing_server_entry_provider_id", base64_string),
    ParamSpec("enable_proxy_protocol_headers", boolean_flag),
    *BASE_PARAMS,
    # relay_protocol is checked against the protocols of the receiving server.
    ParamSpec("relay_protocol", lambda v: v in KNOWN_TUNNEL_PROTOCOLS, optional=False),
    ParamSpec("dsl_prioritized_tunnel_protocol", lambda v: v in KNOWN_TUNNEL_PROTOCOLS),
    *_DIAL_PARAMS,
    *_INPROXY_DIAL_PARAMS,
    ParamSpec("stored_tactics_tag", any_string),
    ParamSpec("speed_test_samples", any_string, kind=JSON),
)

CONNECTED_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("establishment_duration", int_string),
    ParamSpec("light_proxy_id", any_string),
    *_specs(int_string, "light_proxy_entry_tracker", "light_proxy_dial_IPv4",
            "light_proxy_dial_IPv6", "light_proxy_dial_failed", "light_proxy_dial_canceled"),
    ParamSpec("last_connected", last_connected, optional=False),
    *BASE_PARAMS,
)

STATUS_PARAMS: tuple[ParamSpec, ...] = BASE_PARAMS


def _value_problem(spec: ParamSpec, value: Any) -> str | None:
    if spec.kind == JSON:
        return None  # psiphond leaves free JSON to the parameter's user
    if spec.kind == STRING_LIST:
        if not isinstance(value, list):
            return "not a list"
        items = value
    elif isinstance(value, str):
        items = [value]
    else:
        return f"wrong type {type(value).__name__}"
    if not all(isinstance(item, str) for item in items):
        return "list item not a string"
    return None if all(spec.check(item) for item in items) else "invalid value"


def param_problems(params: Mapping[str, Any], specs: tuple[ParamSpec, ...],
                   relay_protocols: Collection[str] | None = None) -> list[str]:
    """Every problem with ``params`` against ``specs`` (empty list = accepted).

    Null values count as absent. ``relay_protocols``, when given, narrows the accepted
    ``relay_protocol`` to the protocols the receiving server runs.
    """
    problems = []
    for spec in specs:
        value = params.get(spec.name)
        if value is None:
            if not spec.optional:
                problems.append(f"{spec.name}: missing")
            continue
        problem = _value_problem(spec, value)
        if problem is None and spec.name == "relay_protocol" and relay_protocols is not None:
            problem = None if value in relay_protocols else "invalid value"
        if problem:
            problems.append(f"{spec.name}: {problem}")
    return problems
