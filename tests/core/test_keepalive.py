"""The keepalive reply Psiphon's client reads as a speed-test sample."""

from __future__ import annotations

import pytest

from onehop.core.api.keepalive import encode_keepalive_response, go_time_binary


def test_go_time_binary_layout():
    # Go: time.Unix(0, 0).UTC().MarshalBinary() = version 1, seconds since year 1 (int64 BE),
    # nanoseconds (int32 BE), zone offset -1 minutes for UTC (int16 BE).
    assert go_time_binary(0).hex() == "01" "0000000e7791f700" "00000000" "ffff"
    assert int.from_bytes(go_time_binary(1785492000)[1:9], "big") == 1785492000 + 62135596800


def test_reply_is_length_prefixed_hour_then_padding():
    reply = encode_keepalive_response(1785492000 + 1234.9, b"\x00" * 7)
    assert reply[0] == 15
    assert reply[1:16] == go_time_binary(1785492000)  # truncated to the hour
    assert reply[16:] == b"\x00" * 7


def test_padding_is_bounded():
    with pytest.raises(ValueError):
        encode_keepalive_response(0, b"x" * 257)
