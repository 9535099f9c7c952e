"""Psiphon-style notices: one JSON object per line with exactly noticeType, data and an
RFC 3339 UTC millisecond timestamp; subscribers see each notice; history is bounded."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta, timezone, UTC
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from onehop.client import notices as n
from onehop.client.notices import Notices, psiphon_timestamp

PSIPHON_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
NOW = datetime(2026, 11, 25, 16, 0, 0, 987654, tzinfo=UTC)


def emitted(stream: io.StringIO) -> list[dict]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.split("\n")[:-1]]


def test_each_notice_is_one_json_line_with_exactly_three_keys():
    out = io.StringIO()
    notices = Notices(out, clock=lambda: NOW)
    notices.emit(n.TUNNELS, count=1)
    notices.emit(n.LISTENING_SOCKS_PROXY_PORT, port=1080)
    first, second = emitted(out)
    assert first == {"noticeType": "Tunnels", "data": {"count": 1}, "timestamp": "2026-11-25T16:00:00.987Z"}
    assert set(second) == {"noticeType", "data", "timestamp"}
    assert second["noticeType"] == "ListeningSocksProxyPort" and second["data"] == {"port": 1080}


def test_notice_without_data_has_an_empty_data_object():
    out = io.StringIO()
    Notices(out, clock=lambda: NOW).emit(n.EXITING)
    assert emitted(out) == [{"noticeType": "Exiting", "data": {}, "timestamp": "2026-11-25T16:00:00.987Z"}]


def test_newlines_and_odd_values_never_split_a_line():
    out = io.StringIO()
    notices = Notices(out, clock=lambda: NOW)
    notices.info("first line\nsecond line", path=Path("/tmp/x"), raw=b"\x00")
    (notice,) = emitted(out)
    assert notice["noticeType"] == "Info"
    assert notice["data"]["message"] == "first line\nsecond line"
    assert notice["data"]["path"] == "/tmp/x"


def test_alert_and_error_helpers_use_psiphon_types():
    out = io.StringIO()
    notices = Notices(out, clock=lambda: NOW)
    notices.alert("careful", code=3)
    notices.error("broken")
    alert, error = emitted(out)
    assert alert["noticeType"] == "Alert" and alert["data"] == {"message": "careful", "code": 3}
    assert error["noticeType"] == "Error" and error["data"] == {"message": "broken"}


def test_psiphon_notice_type_names():
    assert (n.LISTENING_SOCKS_PROXY_PORT, n.LISTENING_HTTP_PROXY_PORT, n.CONNECTING_SERVER,
            n.ACTIVE_TUNNEL, n.TUNNELS, n.CLIENT_REGION, n.HOMEPAGE, n.AVAILABLE_EGRESS_REGIONS,
            n.CLIENT_UPGRADE_AVAILABLE, n.REMOTE_SERVER_LIST_DOWNLOADED, n.ALERT, n.ERROR) == (
        "ListeningSocksProxyPort", "ListeningHttpProxyPort", "ConnectingServer", "ActiveTunnel",
        "Tunnels", "ClientRegion", "Homepage", "AvailableEgressRegions", "ClientUpgradeAvailable",
        "RemoteServerListResourceDownloaded", "Alert", "Error")


# -- timestamps -------------------------------------------------------------------------

def test_timestamp_truncates_to_milliseconds():
    assert psiphon_timestamp(datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC)) == "2026-01-02T03:04:05.999Z"
    assert psiphon_timestamp(datetime(2026, 1, 2, 3, 4, 5, 0, tzinfo=UTC)) == "2026-01-02T03:04:05.000Z"
    assert psiphon_timestamp(datetime(2026, 1, 2, 3, 4, 5, 1000, tzinfo=UTC)) == "2026-01-02T03:04:05.001Z"


def test_timestamp_is_converted_to_utc():
    plus_two = timezone(timedelta(hours=2))
    assert psiphon_timestamp(datetime(2026, 1, 1, 1, 30, 0, 250000, tzinfo=plus_two)) == "2025-12-31T23:30:00.250Z"


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7)),
                                               timezone(timedelta(hours=5, minutes=30))])))
def test_timestamp_format_and_value(moment):
    text = psiphon_timestamp(moment)
    assert PSIPHON_TIMESTAMP.match(text), text
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert timedelta(0) <= moment - parsed < timedelta(milliseconds=1)


def test_emitted_timestamp_uses_the_injected_clock():
    out = io.StringIO()
    ticks = iter([NOW, NOW + timedelta(seconds=1, milliseconds=5)])
    notices = Notices(out, clock=lambda: next(ticks))
    notices.emit(n.INFO, message="a")
    notices.emit(n.INFO, message="b")
    assert [x["timestamp"] for x in emitted(out)] == ["2026-11-25T16:00:00.987Z", "2026-11-25T16:00:01.992Z"]


def test_default_clock_gives_the_psiphon_format():
    out = io.StringIO()
    Notices(out).emit(n.INFO, message="now")
    assert PSIPHON_TIMESTAMP.match(emitted(out)[0]["timestamp"])


# -- subscribers and history ------------------------------------------------------------

def test_subscribers_receive_each_notice_in_order():
    received_a, received_b = [], []
    notices = Notices(None, clock=lambda: NOW)
    notices.subscribe(received_a.append)
    notices.subscribe(received_b.append)
    returned = notices.emit(n.CLIENT_REGION, region="DE")
    notices.emit(n.TUNNELS, count=0)
    assert received_a == received_b
    assert [x["noticeType"] for x in received_a] == ["ClientRegion", "Tunnels"]
    assert received_a[0] == returned == {"noticeType": "ClientRegion", "data": {"region": "DE"},
                                         "timestamp": "2026-11-25T16:00:00.987Z"}


def test_silent_stream_still_records_and_notifies():
    seen = []
    notices = Notices(None, clock=lambda: NOW)
    notices.subscribe(seen.append)
    notices.emit(n.HOMEPAGE, url="https://example.org/")
    assert len(seen) == 1 and list(notices.recent) == seen


def test_recent_is_bounded_and_keeps_the_newest():
    notices = Notices(None, history=3, clock=lambda: NOW)
    for i in range(10):
        notices.emit(n.TUNNELS, count=i)
    assert [x["data"]["count"] for x in notices.recent] == [7, 8, 9]


def test_default_history_is_bounded():
    notices = Notices(None, clock=lambda: NOW)
    for i in range(2000):
        notices.emit(n.TUNNELS, count=i)
    assert 0 < len(notices.recent) < 2000
    assert notices.recent[-1]["data"]["count"] == 1999
