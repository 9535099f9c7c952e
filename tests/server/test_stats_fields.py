"""Stats fields: client timestamps truncated to the hour, IP addresses redacted from free
text, client records validated against a whitelist and capped per tunnel."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from onehop.server import stats
from onehop.server.geoip import GeoIPData
from onehop.server.tunnelstate import ForwardCounts, HandshakeState, TunnelCounters
from onehop.tunnel.relay import ByteCounter

HANDSHAKE = {"propagation_channel_id": "ABCDEF0123456789", "sponsor_id": "0123456789ABCDEF",
             "client_version": "172", "client_platform": "Android_14_com.example", "relay_protocol": "OSSH",
             "server_entry_timestamp": "2026-03-04T05:06:07.891Z", "is_replay": "1",
             "dial_duration": "1234", "device_region": "de", "session_id": "00ff" * 8,
             "ssh_client_version": "SSH-2.0-OpenSSH_8.4 from 10.1.2.3"}


def session(**kwargs):
    fields = stats.handshake_fields(HANDSHAKE)
    defaults = dict(handshake=HandshakeState(dict(HANDSHAKE), "DE", 0.0, fields),
                    geoip=GeoIPData("DE", "Berlin", "Example_ISP", "64500", "Org"), tunnel_protocol="OSSH",
                    ossh_prefix=None, started=1_700_000_000.0, session_id="cd" * 16,
                    counters=TunnelCounters(ByteCounter(10, 20), ByteCounter(1, 2), ForwardCounts(3, 1, 2),
                                            ForwardCounts(5, 0, 4), udpgw_channels=1))
    return SimpleNamespace(**(defaults | kwargs))


def status_records(s, status_data: dict) -> list[tuple[str, dict]]:
    """What the API handler does with a status request's records: parse (stats), charge
    the tunnel's record budget (its counters), add the GeoIP fields (stats)."""
    valid, invalid, skipped = stats.parse_status_records(status_data, s.handshake.fields if s.handshake else {})
    return stats.with_client_geoip(s.counters.records.admit(valid, invalid, skipped), s.geoip)


@pytest.mark.parametrize("text, hour", [
    ("2026-03-04T05:06:07Z", "2026-03-04T05:00:00Z"),
    ("2026-03-04T05:59:59.999999Z", "2026-03-04T05:00:00Z"),
    ("2026-03-04T05:06:07+02:00", "2026-03-04T03:00:00Z"),
    ("2026-03-04T05:06:07", "2026-03-04T05:00:00Z"),
    ("2026-03-04", "2026-03-04T00:00:00Z"),
    ("yesterday", None), ("", None), (1700000000, None), ("2026-13-04T05:06:07Z", None),
])
def test_truncate_timestamp(text, hour):
    assert stats.truncate_timestamp(text) == hour


def test_redact_ips():
    text = "dial tcp 203.0.113.5:443: i/o timeout via [2001:db8::1]:8080 and ::ffff:10.0.0.1, v1.2.3 ok"
    redacted = stats.redact_ips(text)
    assert "203.0.113.5" not in redacted and "2001:db8" not in redacted and "10.0.0.1" not in redacted
    assert redacted.startswith("dial tcp [ip]:443: i/o timeout via [[ip]]:8080 and ")
    assert redacted.endswith(", v1.2.3 ok")
    assert stats.redact_ips("fe80::1%eth0 and 2001:db8::2:53 and 12:30:45") == "[ip] and [ip] and 12:30:45"


def test_status_records_examined_per_request_are_bounded():
    s = session()
    flood = {"failed_tunnel_stats": [FAILED] * (stats.MAX_RECORDS_PER_REQUEST + 40)}
    assert len(status_records(s, flood)) == stats.MAX_RECORDS_PER_REQUEST
    assert s.counters.records.dropped == 40


def test_handshake_fields_are_validated_converted_and_truncated():
    fields = stats.handshake_fields(dict(HANDSHAKE, candidate_number="x", padding="   "))
    assert fields["client_version"] == 172 and fields["is_replay"] is True and fields["dial_duration"] == 1234
    assert fields["server_entry_timestamp"] == "2026-03-04T05:00:00Z"
    assert "candidate_number" not in fields and "padding" not in fields
    assert fields["device_region"] == "de"  # psiphond takes any string here, and so do we
    assert fields["ssh_client_version"] == "SSH-2.0-OpenSSH_8.4 from [ip]"


def test_server_tunnel_fields():
    fields = stats.server_tunnel_fields(session(), 1_700_000_002.5)
    assert fields["duration"] == 2500 and fields["start_time"] == "2023-11-14T22:13:20Z"
    assert (fields["bytes_up"], fields["bytes_down"]) == (11, 22)
    assert (fields["bytes_up_udp"], fields["bytes_down_tcp"]) == (1, 20)
    assert fields["total_port_forward_count_tcp"] == 3 and fields["peak_concurrent_port_forward_count_udp"] == 4
    assert fields["client_region"] == "DE" and fields["client_asn"] == "64500"
    assert fields["handshake_completed"] is True and fields["sponsor_id"] == "0123456789ABCDEF"
    assert fields["session_id"] == "cd" * 16
    bare = stats.server_tunnel_fields(session(handshake=None), 1_700_000_001.0)
    assert bare["handshake_completed"] is False and "sponsor_id" not in bare


def test_unique_user_fields():
    fields = stats.unique_user_fields(session(), "2026-03-01T10:00:00Z")
    assert fields["last_connected"] == "2026-03-01T10:00:00Z" and fields["client_region"] == "DE"
    assert set(fields) >= {"propagation_channel_id", "sponsor_id", "client_version", "client_platform"}
    assert "session_id" not in fields
    assert stats.unique_user_fields(session(), "None")["last_connected"] == "None"
    assert stats.unique_user_fields(session(), "garbage")["last_connected"] == "None"


RSL = {"client_download_timestamp": "2026-03-04T05:06:07Z", "url": "https://s3.example/list",
       "etag": "\"abc\"", "bytes": "1234", "duration": "56", "tunneled": "1", "authenticated": "1",
       "client_ip": "198.51.100.77", "whatever": {"nested": 1}}
FAILED = {"client_failed_timestamp": "2026-03-04T05:06:07Z", "tunnel_error": "dial 203.0.113.9:443 refused",
          "session_id": "ab" * 16, "last_connected": "None", "server_entry_tag": "dGFn",
          "record_probability": "0.5", "bytes_up": "10", "bytes_down": "20", "client_version": "170"}


def test_status_records_are_whitelisted_and_inherit_the_tunnels_identity():
    s = session()
    events = status_records(s, {"remote_server_list_stats": [RSL], "failed_tunnel_stats": [FAILED]})
    (rsl_name, rsl), (failed_name, failed) = events
    assert (rsl_name, failed_name) == ("remote_server_list", "failed_tunnel")
    assert rsl["client_download_timestamp"] == "2026-03-04T05:00:00Z" and rsl["bytes"] == 1234
    assert rsl["tunneled"] is True and "client_ip" not in rsl and "whatever" not in rsl
    assert rsl["sponsor_id"] == "0123456789ABCDEF" and rsl["client_region"] == "DE"
    assert failed["tunnel_error"] == "dial [ip]:443 refused"
    assert failed["client_version"] == 170 and failed["record_probability"] == 0.5
    assert failed["client_failed_timestamp"] == "2026-03-04T05:00:00Z"
    assert s.counters.records.logged == 2


@pytest.mark.parametrize("record", [
    "not an object",
    {k: v for k, v in RSL.items() if k != "url"},                  # a required field missing
    dict(RSL, bytes="12 bytes"),                                    # a known field invalid
    dict(RSL, client_download_timestamp="soon"),
    dict(RSL, url="x" * 5000),
])
def test_invalid_records_are_skipped_whole(record):
    s = session()
    assert status_records(s, {"remote_server_list_stats": [record, RSL]}) == [
        ("remote_server_list", status_records(session(), {"remote_server_list_stats": [RSL]})[0][1])]
    assert s.counters.records.invalid == 1


def test_records_are_capped_per_tunnel():
    s = session()
    batch = {"failed_tunnel_stats": [FAILED] * stats.MAX_RECORDS_PER_REQUEST}
    logged = sum(len(status_records(s, batch))
                 for _ in range(stats.MAX_RECORDS_PER_TUNNEL // stats.MAX_RECORDS_PER_REQUEST + 1))
    assert logged == stats.MAX_RECORDS_PER_TUNNEL
    assert status_records(s, {"failed_tunnel_stats": [FAILED]}) == []
    assert s.counters.records.dropped == stats.MAX_RECORDS_PER_REQUEST + 1


def test_odd_status_data_is_ignored():
    s = session()
    assert status_records(s, {"remote_server_list_stats": "x", "failed_tunnel_stats": None}) == []


def test_records_of_a_client_built_without_a_revision_are_kept():
    """Psiphon's client sends client_build_rev "" when built without one (its release
    fixtures are); psiphond checks it with isHexDigits, which the empty string passes."""
    sent = {"session_id": "ab" * 16, "propagation_channel_id": "ABCDEF0123456789", "sponsor_id": "0123456789ABCDEF",
            "client_version": "1", "client_platform": "Linux_interop", "client_build_rev": "",
            "client_download_timestamp": "2026-03-04T05:00:00Z", "tunneled": "0",
            "url": "http://127.0.0.1:8080/list", "etag": "\"abc\"", "bytes": "2117", "duration": "6",
            "authenticated": "1"}
    s = session()
    (name, fields), = status_records(s, {"remote_server_list_stats": [sent],
                                               "failed_tunnel_stats": [dict(FAILED, client_build_rev="")]})[:1]
    assert name == "remote_server_list" and fields["client_build_rev"] == "" and fields["bytes"] == 2117
    assert s.counters.records.logged == 2 and s.counters.records.invalid == 0
    s = session()
    assert status_records(s, {"remote_server_list_stats": [dict(sent, client_build_rev="v1.2 dirty")]}) == []
    assert s.counters.records.invalid == 1


def test_free_text_fields_psiphond_accepts_keep_the_record():
    """psiphond takes device_region, network_type and ossh_prefix as any string; a record
    carrying a lower-case region or a spaced network type must not be dropped."""
    s = session()
    record = dict(FAILED, device_region="us", network_type="MOBILE 5G", ossh_prefix="my prefix")
    (event,) = status_records(s, {"failed_tunnel_stats": [record]})
    assert event[1]["device_region"] == "us" and event[1]["network_type"] == "MOBILE 5G"
