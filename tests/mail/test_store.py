"""The state directory: outbox transactions, the keyed rate limit, erasure, blobs."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from onehop.mail.blobs import Blobs
from onehop.mail.store import (
    DAY,
    DB_NAME,
    KEY_NAME,
    QueuedReply,
    Store,
    StoreError,
    load_or_create_key,
    utc_day,
)

T0 = 1_700_000_000.0
SECRET = "secret.person@users.test"


def reply(i: int, blob: str | None = None) -> QueuedReply:
    return QueuedReply(f"<m{i}@example.org>", "links", json.dumps({"to": SECRET, "n": i}), blob)


def test_daily_limit_is_checked_in_the_queueing_transaction(tmp_path):
    store = Store(tmp_path)
    h, other = b"h" * 32, b"o" * 32
    results = [store.enqueue(h, T0 + i, 3, "get@example.org", [reply(i)]) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert store.enqueue(other, T0 + 5, 3, "get@example.org", [reply(5)])
    assert store.pending() == 4
    assert store.enqueue(h, T0 + DAY + 0.5, 3, "get@example.org", [reply(6)])  # the first one expired
    assert store.purge_senders(T0 + 2 * DAY) >= 4
    store.flush()
    events: dict[str, int] = {}
    for _, _, event, n in store.stats_rows():
        events[event] = events.get(event, 0) + n
    assert events == {"answered": 5, "rejected:rate_limit": 2}
    store.close()


def test_queued_rows_survive_a_reopen_and_come_out_in_order(tmp_path):
    store = Store(tmp_path)
    store.enqueue(b"a" * 32, T0, 3, "get@example.org", [reply(1), reply(2)])
    store.enqueue(b"b" * 32, T0 + 1, 3, "fa@example.org", [reply(3)])
    store._conn.close()  # as in a crash: no close(), no flush
    store._conn = None
    again = Store(tmp_path)
    rows = again.due(T0 + 2)
    assert [r.message_id for r in rows] == ["<m1@example.org>", "<m2@example.org>", "<m3@example.org>"]
    assert again.next_due() == T0
    again.defer(rows[0], T0 + 100, "relay answered 451")
    assert [r.message_id for r in again.due(T0 + 2)] == ["<m2@example.org>", "<m3@example.org>"]
    assert again.due(T0 + 100)[0].attempts == 1
    again.close()


def test_the_message_id_is_unique_so_a_reply_is_queued_once(tmp_path):
    store = Store(tmp_path)
    store.enqueue(b"a" * 32, T0, 3, "get@example.org", [reply(1)])
    with pytest.raises(StoreError):
        store.enqueue(b"b" * 32, T0, 3, "get@example.org", [reply(1)])
    assert store.pending() == 1  # the failed transaction left nothing behind
    store.close()


def test_delivered_rows_leave_no_trace_of_the_requester(tmp_path):
    store = Store(tmp_path)
    for i in range(20):
        store.enqueue(bytes([i]) * 32, T0, 3, "get@example.org", [reply(i)])

    def files() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())

    assert SECRET.encode() in files()  # queued: the address is needed to deliver
    for row in store.due(T0 + 1, 100):
        store.mark_sent(row, T0 + 2)
    assert store.scrub()
    store.close()
    assert SECRET.encode() not in files()
    rows = Store(tmp_path).stats_rows()
    assert rows == [(utc_day(T0), "get@example.org", "answered", 20),
                    (utc_day(T0), "get@example.org", "delivered", 20)]


def test_drop_and_expired(tmp_path):
    store = Store(tmp_path)
    store.enqueue(b"a" * 32, T0, 3, "get@example.org", [reply(1)])
    store.enqueue(b"b" * 32, T0 + 50, 3, "get@example.org", [reply(2)])
    (old,) = store.expired(T0 + 100, 60)
    store.drop(old, "expired", T0 + 100)
    assert [r.message_id for r in store.due(T0 + 100)] == ["<m2@example.org>"]
    assert ("failed:expired", 1) in {(e, n) for _, _, e, n in store.stats_rows()}
    store.close()


def test_the_hmac_key_is_private_stable_and_created_once(tmp_path):
    keys, errors = [], []

    def make():
        try:
            keys.append(load_or_create_key(tmp_path / "state"))
        except StoreError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(keys)) == 1 and len(keys[0]) == 32
    path = tmp_path / "state" / KEY_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [KEY_NAME]
    path.write_bytes(b"short")
    with pytest.raises(StoreError, match="expected 32 bytes"):
        load_or_create_key(tmp_path / "state")


def test_database_and_directory_modes(tmp_path):
    store = Store(tmp_path / "s")
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "s" / DB_NAME).stat().st_mode) == 0o600
    store.close()


def test_store_errors_are_ours(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError):
        Store(tmp_path / "file" / "state")
    with pytest.raises(StoreError, match="no responder state"):
        Store(tmp_path / "nothing", create=False)
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        Store(tmp_path / "corrupt")


def test_blobs_snapshot_read_and_collect(tmp_path):
    blobs = Blobs(tmp_path)
    src = tmp_path / "build.pyz"
    src.write_bytes(b"build one")
    first = blobs.snapshot(src)
    assert blobs.read(first) == b"build one" and blobs.snapshot(src) == first
    src.write_bytes(b"build two, replaced")
    os.utime(src, ns=(1, 1))
    second = blobs.snapshot(src)
    assert second != first and blobs.exists(first) and blobs.exists(second)
    assert blobs.gc({second}) == 1 and not blobs.exists(first)
    blobs.path(second).write_bytes(b"tampered")
    with pytest.raises(StoreError, match="corrupt"):
        blobs.read(second)
    with pytest.raises(StoreError):
        blobs.path("../../etc/passwd")
    with pytest.raises(StoreError):
        blobs.snapshot(tmp_path / "missing")
