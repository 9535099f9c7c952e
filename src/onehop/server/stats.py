"""What the server's stats events say: field builders and client-record validation.

Nothing here ever sees a client IP address: fields come from the handshake parameters
(a fixed list), the GeoIP names, the server's own counters, and the records clients
send in status requests, which are validated field by field against a whitelist
(unknown fields are dropped, a bad record is skipped whole). Client-reported timestamps
are truncated to the hour, free-text errors have IP addresses redacted, and a tunnel
may log at most ``MAX_RECORDS_PER_TUNNEL`` client records (counted by the tunnel's
``RecordCounts``: nothing here changes a tunnel, it only reads one through ``TunnelView``).
"""

from __future__ import annotations

import re
from datetime import datetime, UTC
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

from ..core.redact import redact_addresses
from .tunnelstate import MAX_RECORDS_PER_TUNNEL  # noqa: F401 (the budget belongs to the tunnel's counts)

if TYPE_CHECKING:
    from .geoip import GeoIPData
    from .seams import TunnelView

MAX_STRING = 1024
#: Records examined per status request (Psiphon's client sends at most 64 KiB of them).
MAX_RECORDS_PER_REQUEST = 256
NONE = "None"

_HEX = re.compile(r"[0-9a-fA-F]{1,128}")
#: psiphond's isHexDigits: the empty string passes (clients built without a revision send it).
_BUILD_REV = re.compile(r"[0-9a-fA-F]{0,128}")
_DECIMAL = re.compile(r"[0-9]{1,18}")
_FLOAT = re.compile(r"[0-9]{1,18}(\.[0-9]{1,18})?")
_NO_SPACE = re.compile(r"[^\s]{1,256}")
_REGION = re.compile(r"[A-Z]{2}|None")


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def truncate_timestamp(text: Any) -> str | None:
    """An RFC 3339 time truncated to the hour (UTC), or None if ``text`` is not one."""
    if not isinstance(text, str) or not 10 <= len(text) <= 40:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")


def redact_ips(text: str) -> str:
    """``text`` with IPv4 and IPv6 addresses replaced by ``[ip]`` (the project's one redactor)."""
    return redact_addresses(text)


# -- field kinds: validate a client-sent value and convert it for the log ----------------

def _match(pattern: re.Pattern, convert: Callable[[str], Any] = str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, str) and pattern.fullmatch(value):
            return convert(value)
        raise ValueError("invalid")
    return check


def _string(value: Any) -> str:
    """Free text: bounded, and any IP address in it redacted (whoever put it there)."""
    if isinstance(value, str) and len(value) <= MAX_STRING:
        return redact_ips(value)
    raise ValueError("invalid")


def _flag(value: Any) -> bool:
    if value in ("0", "1"):
        return value == "1"
    raise ValueError("invalid")


def _timestamp(value: Any) -> str:
    result = truncate_timestamp(value)
    if result is None:
        raise ValueError("invalid")
    return result


def _last_connected(value: Any) -> str:
    return NONE if value == NONE else _timestamp(value)


HEX, INT, FLOAT = _match(_HEX), _match(_DECIMAL, int), _match(_FLOAT, float)
WORD, REGION, BUILD_REV = _match(_NO_SPACE), _match(_REGION), _match(_BUILD_REV)

#: Handshake and dial parameters Psiphon logs with a tunnel, with their kinds. A field that
#: psiphond accepts as any string (device_region, network_type, ossh_prefix) is free text
#: here too: a stricter check would drop the client's whole record.
BASE_FIELDS: dict[str, Callable[[Any], Any]] = {
    "propagation_channel_id": HEX, "sponsor_id": HEX, "client_version": INT, "client_platform": WORD,
    "client_build_rev": BUILD_REV, "device_region": _string, "egress_region": REGION,
    "relay_protocol": WORD, "ssh_client_version": _string, "network_type": _string,
    "server_entry_region": REGION, "server_entry_source": WORD, "server_entry_timestamp": _timestamp,
    "dial_port_number": INT, "is_replay": _flag, "dial_duration": INT, "candidate_number": INT,
    "established_tunnels_count": INT, "upstream_ossh_padding": INT, "ossh_prefix": _string,
    "upstream_proxy_type": WORD, "session_id": HEX, "split_tunnel": _flag,
    "establishment_duration": INT,
}
#: Fields the client's session records may carry, besides BASE_FIELDS.
REMOTE_SERVER_LIST_FIELDS = {
    "client_download_timestamp": _timestamp, "url": _string, "etag": _string, "bytes": INT,
    "duration": INT, "tunneled": _flag, "authenticated": _flag,
}
FAILED_TUNNEL_FIELDS = {
    "client_failed_timestamp": _timestamp, "tunnel_error": _string, "last_connected": _last_connected,
    "server_entry_tag": _string, "record_probability": FLOAT, "bytes_up": INT, "bytes_down": INT,
    "liveness_test_upstream_bytes": INT, "liveness_test_sent_upstream_bytes": INT,
    "liveness_test_downstream_bytes": INT, "liveness_test_received_downstream_bytes": INT,
}
RECORD_KINDS = {
    "remote_server_list_stats": ("remote_server_list", REMOTE_SERVER_LIST_FIELDS,
                                 ("client_download_timestamp", "url")),
    "failed_tunnel_stats": ("failed_tunnel", FAILED_TUNNEL_FIELDS, ("client_failed_timestamp", "tunnel_error")),
}
#: Filled from the reporting tunnel's handshake when a record lacks them.
INHERITED = ("propagation_channel_id", "sponsor_id", "client_version", "client_platform")


def validated(params: dict, kinds: dict[str, Callable[[Any], Any]]) -> tuple[dict, list[str]]:
    """(log-ready fields, names of invalid fields) for the known fields of ``params``."""
    fields, bad = {}, []
    for name, check in kinds.items():
        if name in params:
            try:
                fields[name] = check(params[name])
            except ValueError:
                bad.append(name)
    return fields, bad


def handshake_fields(params: dict) -> dict:
    """The handshake parameters a server keeps for the tunnel's logs (invalid ones dropped)."""
    return validated(params, BASE_FIELDS)[0]


# -- events ----------------------------------------------------------------------------

def server_tunnel_fields(session: TunnelView, now: float) -> dict:
    hs, counters = session.handshake, session.counters
    fields = dict(hs.fields) if hs else {}
    tcp, udp = counters.tcp_bytes, counters.udp_bytes
    counts, udp_counts = counters.tcp_forwards, counters.udp_forwards
    fields.update(session.geoip.log_fields())
    fields.update(
        relay_protocol=session.tunnel_protocol, handshake_completed=hs is not None,
        start_time=rfc3339(session.started), duration=int((now - session.started) * 1000),
        bytes_up_tcp=tcp.up, bytes_down_tcp=tcp.down, bytes_up_udp=udp.up, bytes_down_udp=udp.down,
        bytes_up=tcp.up + udp.up, bytes_down=tcp.down + udp.down,
        total_port_forward_count_tcp=counts.opened, peak_concurrent_port_forward_count_tcp=counts.peak,
        rejected_port_forward_count_tcp=counts.rejected,
        total_port_forward_count_udp=udp_counts.opened,
        peak_concurrent_port_forward_count_udp=udp_counts.peak,
        rejected_port_forward_count_udp=udp_counts.rejected,
        udpgw_channel_count=counters.udpgw_channels,
        client_stats_logged=counters.records.logged, client_stats_dropped=counters.records.dropped,
    )
    if session.ossh_prefix:
        fields["ossh_prefix"] = session.ossh_prefix
    if session.session_id:
        fields["session_id"] = session.session_id  # the client's random session ID, as Psiphon logs it
    return fields


def unique_user_fields(session: TunnelView, last_connected: Any) -> dict:
    hs = session.handshake
    fields = {k: v for k, v in (hs.fields if hs else {}).items()
              if k in INHERITED or k in ("relay_protocol", "device_region", "network_type")}
    fields.update(session.geoip.log_fields())
    fields["relay_protocol"] = session.tunnel_protocol
    fields["last_connected"] = NONE if last_connected in (None, NONE) else (truncate_timestamp(last_connected) or NONE)
    return fields


def _record_fields(record: Any, kinds: dict, required: tuple[str, ...], inherited: dict) -> dict | None:
    if not isinstance(record, dict):
        return None
    fields, bad = validated(record, {**BASE_FIELDS, **kinds})
    if bad or any(name not in fields for name in required):
        return None
    for name in INHERITED:
        if name not in record and name in inherited:
            fields[name] = inherited[name]
    return fields


#: (valid records as (event name, fields), invalid count, not-examined count)
ParsedRecords = tuple[list[tuple[str, dict]], int, int]


def parse_status_records(status_data: dict, inherited: dict) -> ParsedRecords:
    """(valid records as (event name, fields), invalid count, not-examined count).

    Pure and thread-safe: the server runs it off the event loop. At most
    ``MAX_RECORDS_PER_REQUEST`` records are examined; the rest are counted, not read.
    """
    valid: list[tuple[str, dict]] = []
    invalid = skipped = 0
    for key, (event, kinds, required) in RECORD_KINDS.items():
        records = status_data.get(key)
        for record in records if isinstance(records, list) else ():
            if len(valid) + invalid >= MAX_RECORDS_PER_REQUEST:
                skipped += 1
                continue
            fields = _record_fields(record, kinds, required, inherited)
            if fields is None:
                invalid += 1
            else:
                valid.append((event, fields))
    return valid, invalid, skipped


def with_client_geoip(records: list[tuple[str, dict]], geoip: GeoIPData) -> list[tuple[str, dict]]:
    """Client records as logged: each with the reporting client's GeoIP fields."""
    names = geoip.log_fields()
    return [(event, {**fields, **names}) for event, fields in records]
