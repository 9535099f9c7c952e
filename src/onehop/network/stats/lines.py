"""Server event lines -> rows of ``stats_events`` (pure: bytes in, values out).

A chunk of a log is cut at its last newline: the complete lines are parsed, a trailing
partial line (a server killed mid-write, a full disk) is left for a later ingest. A line
that is not a JSON object with an ``event_name`` and an RFC 3339 ``timestamp`` is
malformed: counted with its reason, skipped, never fatal. When a torn line was
followed by a complete event on the same line (the server appends after the fragment
once it can write again), the event is recovered and only the fragment is counted.

Every string stored, in columns or in ``details``, has IP addresses redacted: the
server never logs a client address, and ingest makes sure none reaches the database
even from a damaged or foreign log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, UTC
from typing import Any

from ...server.stats import redact_ips

MAX_LINE = 1 << 20
MAX_RECOVERY_TRIES = 16
_REGION = re.compile(r"[A-Z]{2}|None")
_HEX = re.compile(r"[0-9A-Fa-f]{1,32}")
_WORD = re.compile(r"[^\s]{1,64}")
#: Fields that get their own column; everything else goes to ``details``.
COLUMNS = {"event_name", "timestamp", "host_id", "client_region", "propagation_channel_id", "sponsor_id",
           "client_platform", "client_version", "relay_protocol", "listener_protocol", "handshake_completed",
           "bytes_up", "bytes_down", "duration"}


@dataclass(frozen=True)
class Line:
    offset: int       # byte offset of the line in its file
    data: bytes       # without the newline


@dataclass(frozen=True)
class Malformed:
    offset: int
    reason: str


def complete_lines(chunk: bytes, base_offset: int) -> tuple[list[Line], int]:
    """The complete lines of ``chunk`` (which starts at ``base_offset`` in its file) and
    how many bytes they span; bytes after the last newline are not consumed."""
    end = chunk.rfind(b"\n") + 1
    lines, start = [], 0
    while start < end:
        stop = chunk.index(b"\n", start)
        lines.append(Line(base_offset + start, chunk[start:stop].rstrip(b"\r")))
        start = stop + 1
    return lines, end


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _event(data: bytes) -> tuple[dict | None, str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None, "not JSON"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    if not isinstance(value.get("event_name"), str) or not value["event_name"]:
        return None, "no event_name"
    if _timestamp(value.get("timestamp")) is None:
        return None, "no RFC 3339 timestamp"
    return value, ""


def parse(line: Line) -> tuple[dict | None, list[Malformed]]:
    """(the event, or None; what was malformed in the line)."""
    if len(line.data) > MAX_LINE:
        return None, [Malformed(line.offset, f"longer than {MAX_LINE} bytes")]
    if not line.data.strip():
        return None, [Malformed(line.offset, "empty line")]
    event, reason = _event(line.data)
    if event is not None:
        return event, []
    start, tries = line.data.find(b'{"', 1), 0
    while start > 0 and tries < MAX_RECOVERY_TRIES:  # a torn line, then a whole event?
        recovered, _ = _event(line.data[start:])
        if recovered is not None:
            return recovered, [Malformed(line.offset, "torn line (a partial write) before an event")]
        start, tries = line.data.find(b'{"', start + 1), tries + 1
    return None, [Malformed(line.offset, reason)]


def events(lines: list[Line]) -> Iterator[tuple[Line, dict | None, list[Malformed]]]:
    for line in lines:
        event, bad = parse(line)
        yield line, event, bad


def scrub(value: Any, depth: int = 0) -> Any:
    """``value`` with IP addresses redacted from every string, at any depth."""
    if isinstance(value, str):
        return redact_ips(value[:4096])
    if depth > 8:
        return None
    if isinstance(value, dict):
        return {redact_ips(str(k))[:128]: scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, depth + 1) for v in value[:256]]
    return value if isinstance(value, (int, float, bool)) or value is None else redact_ips(str(value))


def _text(value: Any, pattern: re.Pattern, default: str = "") -> str:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    return text if pattern.fullmatch(text) else default


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 62 else 0


def host_of(event: dict) -> str:
    return redact_ips(str(event.get("host_id", "")))[:100]


def row(event: dict) -> dict:
    """The ``stats_events`` columns of an event (without file, offset and server)."""
    at = _timestamp(event["timestamp"])
    assert at is not None  # parse() checked it
    duration = event.get("duration")
    completed = event.get("handshake_completed")
    return {
        "event_name": redact_ips(event["event_name"])[:64], "at": at, "day": at.date(),
        "host_id": host_of(event),
        "region": _text(event.get("client_region"), _REGION, "None"),
        "channel_id": _text(event.get("propagation_channel_id"), _HEX).upper(),
        "sponsor_id": _text(event.get("sponsor_id"), _HEX).upper(),
        "client_platform": redact_ips(_text(event.get("client_platform"), _WORD))[:64],
        "client_version": redact_ips(_text(event.get("client_version"), _WORD))[:32],
        "relay_protocol": redact_ips(_text(event.get("relay_protocol") or event.get("listener_protocol"), _WORD))[:32],
        "handshake_completed": completed if isinstance(completed, bool) else None,
        "bytes_up": _count(event.get("bytes_up")), "bytes_down": _count(event.get("bytes_down")),
        "duration_ms": _count(duration) if duration is not None else None,
        "details": scrub({k: v for k, v in event.items() if k not in COLUMNS}),
    }
