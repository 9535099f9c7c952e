"""The answer to an SSH ``keepalive@openssh.com`` request, as Psiphon's server gives it.

Psiphon's client pads its keepalives with 0-256 random bytes and records the round trip as
a speed-test sample; it expects the reply to carry a length-prefixed timestamp (Go's
``time.MarshalBinary`` of the current hour, UTC) followed by 0-256 bytes of random padding,
and it warns on an empty reply. Pure: the time and the padding are parameters.
"""

from __future__ import annotations

import struct

#: Seconds from 0001-01-01 (Go's internal epoch) to 1970-01-01.
_GO_UNIX_TO_INTERNAL = 62135596800
_GO_TIME_BINARY_V1 = 1
_GO_UTC_OFFSET_MINUTES = -1  # how MarshalBinary marks the UTC location
MAX_KEEPALIVE_PADDING = 256


def go_time_binary(unix_seconds: int) -> bytes:
    """Go's ``time.Time.MarshalBinary`` (version 1) of a whole-second UTC time: 15 bytes."""
    return struct.pack(">BqiH", _GO_TIME_BINARY_V1, unix_seconds + _GO_UNIX_TO_INTERNAL, 0,
                       _GO_UTC_OFFSET_MINUTES & 0xFFFF)


def encode_keepalive_response(now: float, padding: bytes) -> bytes:
    """``len(timestamp) || timestamp(now truncated to the hour) || padding``."""
    if len(padding) > MAX_KEEPALIVE_PADDING:
        raise ValueError("keepalive padding longer than 256 bytes")
    hour = int(now) - int(now) % 3600
    timestamp = go_time_binary(hour)
    return bytes([len(timestamp)]) + timestamp + padding
