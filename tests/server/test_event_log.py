"""EventLog: JSON lines with event_name and an RFC 3339 timestamp; a write failure turns
logging off (``failed`` says why) and never reaches the caller."""

from __future__ import annotations

import errno
import io
import json
import re
from datetime import datetime, UTC

from onehop.server import events
from onehop.server.events import EventLog

T0 = datetime(2026, 11, 25, 16, 0, 7, tzinfo=UTC).timestamp()
RFC3339_UTC_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_each_event_is_one_json_line_with_name_and_timestamp(tmp_path):
    path = tmp_path / "events.log"
    log = EventLog(str(path), clock=lambda: T0)
    log.write("unique_user", client_region="DE", sponsor_id="0123")
    log.irregular_tunnel("OSSH", "bad magic")
    log.close()
    first, second = lines(path)
    assert first == {"event_name": "unique_user", "timestamp": first["timestamp"],
                     "client_region": "DE", "sponsor_id": "0123"}
    assert RFC3339_UTC_SECONDS.match(first["timestamp"])
    assert datetime.strptime(first["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC).timestamp() == T0
    assert second["event_name"] == "irregular_tunnel"
    assert second["listener_protocol"] == "OSSH" and second["tunnel_error"] == "bad magic"
    assert log.failed is None


def test_field_values_with_newlines_stay_on_one_line(tmp_path):
    path = tmp_path / "events.log"
    log = EventLog(str(path), clock=lambda: T0)
    log.write("irregular_tunnel", tunnel_error="line1\nline2")
    log.close()
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") == 1 and text.endswith("\n")
    assert lines(path)[0]["tunnel_error"] == "line1\nline2"


def test_appends_to_an_existing_log(tmp_path):
    path = tmp_path / "events.log"
    path.write_text('{"event_name":"old"}\n', encoding="utf-8")
    log = EventLog(str(path), clock=lambda: T0)
    log.write("new")
    log.close()
    assert [r["event_name"] for r in lines(path)] == ["old", "new"]


def test_no_path_means_no_logging_and_no_failure():
    log = EventLog(None)
    log.write("unique_user")
    assert log.failed is None


def test_unopenable_path_disables_logging_without_raising(tmp_path):
    (tmp_path / "a-file").write_text("")  # the log makes a missing directory, not this one
    path = tmp_path / "a-file" / "events.log"
    log = EventLog(str(path))
    assert log.failed and str(path) in log.failed
    log.write("unique_user", client_region="DE")  # must not raise
    assert not path.exists()


class FailingFile(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise OSError(errno.ENOSPC, "No space left on device")


def test_write_failure_disables_logging_and_never_raises(monkeypatch):
    failing = FailingFile()  # the disk is full
    monkeypatch.setattr(events, "open", lambda *args, **kwargs: failing, raising=False)
    log = EventLog("events.log", clock=lambda: T0)
    assert log.failed is None
    log.write("unique_user")
    assert log.failed and "No space left on device" in log.failed
    log.write("unique_user")
    log.irregular_tunnel("SSH", "x")
    assert failing.writes == 1  # logging stopped after the first failure
    log.close()


class FailingFlush(io.StringIO):
    def flush(self) -> None:
        raise OSError(errno.EIO, "Input/output error")


def test_flush_failure_is_a_write_failure_too(monkeypatch):
    monkeypatch.setattr(events, "open", lambda *args, **kwargs: FailingFlush(), raising=False)
    log = EventLog("events.log", clock=lambda: T0)
    log.write("unique_user")
    assert log.failed and "Input/output error" in log.failed


def test_close_is_idempotent(tmp_path):
    log = EventLog(str(tmp_path / "events.log"))
    log.close()
    log.close()
    log.write("after_close")  # ignored, not an error
    assert log.failed is None
