"""The state directory's SQLite database: the outbox, the rate limit and the statistics.

One connection, used from one thread (``AsyncStore`` runs every call on a single worker
thread, so calls are serialized). WAL with ``synchronous=FULL``: a commit is on disk when
it returns, so a request gets its 250 only after its replies are durably queued.
``secure_delete`` zeroes deleted rows, and ``scrub`` truncates the WAL once nothing is
queued, so a delivered reply leaves no copy of the requester's address behind.

Tables::

    outbox(id, message_id UNIQUE, address, kind, spec JSON, blob, queued_at, attempts,
           next_attempt, last_error)   -- pending replies only: a delivered row is deleted
    senders(hash, at)                  -- HMAC-SHA256(key, sender) per answered request,
                                          deleted after a day
    stats(day, address, event, n)      -- answered, delivered, rejected:<reason>,
                                          failed:<reason> per UTC day and our address
    meta(key, value)                   -- schema version

The HMAC key is ``sender-hmac.key`` (32 random bytes, mode 0600) beside the database,
created once per state directory.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import MailReason, OnehopError

SCHEMA_VERSION = 1
DB_NAME = "responder.sqlite3"
KEY_NAME = "sender-hmac.key"
KEY_BYTES = 32
DAY = 86400.0

ANSWERED = "answered"
DELIVERED = "delivered"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox(
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    blob TEXT,
    queued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt);
CREATE TABLE IF NOT EXISTS senders(hash BLOB NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS senders_hash ON senders(hash, at);
CREATE INDEX IF NOT EXISTS senders_at ON senders(at);
CREATE TABLE IF NOT EXISTS stats(
    day TEXT NOT NULL, address TEXT NOT NULL, event TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY(day, address, event)) WITHOUT ROWID;
"""

T = TypeVar("T")


class StoreError(OnehopError):
    """The state directory or its database failed (disk full, permissions, corruption)."""


@dataclass(frozen=True)
class QueuedReply:
    """One reply to queue: its Message-ID, kind, spec (JSON) and attachment blob."""

    message_id: str
    kind: str
    spec: str
    blob: str | None = None


@dataclass(frozen=True)
class OutboxRow:
    id: int
    message_id: str
    address: str
    kind: str
    spec: str
    blob: str | None
    queued_at: float
    attempts: int
    next_attempt: float


def utc_day(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def _mapped(method: Callable[..., T]) -> Callable[..., T]:
    """sqlite3 and OS errors become StoreError (this module's one boundary)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            if self._conn is not None and self._conn.in_transaction:
                try:
                    self._conn.rollback()
                except sqlite3.Error:
                    pass
            raise StoreError(f"state database {self.path}: {exc}") from None
    return wrapper


class Store:
    """Synchronous; use from a single thread (see AsyncStore)."""

    def __init__(self, state_dir: str | os.PathLike, *, create: bool = True) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        self._conn: sqlite3.Connection | None = None
        self._events: dict[tuple[str, str, str], int] = {}
        self._scrub_needed = False
        self._open(create)

    @_mapped
    def _open(self, create: bool) -> None:
        if not create and not self.path.exists():
            raise StoreError(f"no responder state in {self.state_dir}")
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON", "busy_timeout=5000",
                       "journal_size_limit=1048576"):
            self._conn.execute(f"PRAGMA {pragma}")
        if create:
            os.chmod(self.path, 0o600)
            self._conn.executescript(_SCHEMA)
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None or int(row[0]) != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {row and row[0]}, expected {SCHEMA_VERSION}")

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is closed")
        return self._conn

    # -- requests ---------------------------------------------------------------------

    @_mapped
    def enqueue(self, sender_hash: bytes, now: float, daily_limit: int, address: str,
                replies: Iterable[QueuedReply]) -> bool:
        """In one transaction: check the sender's replies in the last day, then record
        this one and queue ``replies``. False (nothing queued) if over the limit."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        (count,) = c.execute("SELECT COUNT(*) FROM senders WHERE hash=? AND at>?",
                             (sender_hash, now - DAY)).fetchone()
        if count >= daily_limit:
            self._bump(address, f"rejected:{MailReason.RATE_LIMIT}", now)
            self._flush_events()
            c.execute("COMMIT")
            return False
        c.execute("INSERT INTO senders(hash, at) VALUES (?, ?)", (sender_hash, now))
        c.executemany("INSERT INTO outbox(message_id, address, kind, spec, blob, queued_at, next_attempt) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?)",
                      [(r.message_id, address, r.kind, r.spec, r.blob, now, now) for r in replies])
        self._bump(address, ANSWERED, now)
        self._flush_events()
        c.execute("COMMIT")
        return True

    def count_event(self, address: str, event: str, now: float, n: int = 1) -> None:
        """A statistic that may wait for the next commit (rejections)."""
        self._bump(address, event, now, n)

    def _bump(self, address: str, event: str, now: float, n: int = 1) -> None:
        key = (utc_day(now), address, event)
        self._events[key] = self._events.get(key, 0) + n

    def _flush_events(self) -> None:
        """Inside a transaction: write the buffered statistics."""
        if self._events:
            self.conn.executemany(
                "INSERT INTO stats(day, address, event, n) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(day, address, event) DO UPDATE SET n = n + excluded.n",
                [(d, a, e, n) for (d, a, e), n in self._events.items()])
            self._events.clear()

    @_mapped
    def flush(self) -> None:
        if self._events:
            self.conn.execute("BEGIN IMMEDIATE")
            self._flush_events()
            self.conn.execute("COMMIT")

    # -- the outbox -------------------------------------------------------------------

    @_mapped
    def due(self, now: float, limit: int = 50) -> list[OutboxRow]:
        rows = self.conn.execute(
            "SELECT id, message_id, address, kind, spec, blob, queued_at, attempts, next_attempt "
            "FROM outbox WHERE next_attempt<=? ORDER BY id LIMIT ?", (now, limit)).fetchall()
        return [OutboxRow(*row) for row in rows]

    @_mapped
    def next_due(self) -> float | None:
        (value,) = self.conn.execute("SELECT MIN(next_attempt) FROM outbox").fetchone()
        return value

    @_mapped
    def pending(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    @_mapped
    def mark_sent(self, row: OutboxRow, now: float) -> None:
        """The relay accepted ``row``: delete it (and its requester address) at once."""
        self._finish(row, DELIVERED, now)

    @_mapped
    def drop(self, row: OutboxRow, reason: MailReason, now: float) -> None:
        """Give up on ``row`` (refused by the relay for good, or expired)."""
        self._finish(row, f"failed:{reason}", now)

    def _finish(self, row: OutboxRow, event: str, now: float) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        c.execute("DELETE FROM outbox WHERE id=?", (row.id,))
        self._bump(row.address, event, now)
        self._flush_events()
        c.execute("COMMIT")
        self._scrub_needed = True

    @_mapped
    def defer(self, row: OutboxRow, next_attempt: float, error: str) -> None:
        self.conn.execute("UPDATE outbox SET attempts=attempts+1, next_attempt=?, last_error=? WHERE id=?",
                          (next_attempt, error[:200], row.id))

    @_mapped
    def expired(self, now: float, lifetime: float) -> list[OutboxRow]:
        rows = self.conn.execute(
            "SELECT id, message_id, address, kind, spec, blob, queued_at, attempts, next_attempt "
            "FROM outbox WHERE queued_at<? ORDER BY id", (now - lifetime,)).fetchall()
        return [OutboxRow(*row) for row in rows]

    @_mapped
    def blob_refs(self) -> set[str]:
        return {b for (b,) in self.conn.execute("SELECT DISTINCT blob FROM outbox WHERE blob IS NOT NULL")}

    # -- housekeeping -----------------------------------------------------------------

    @_mapped
    def purge_senders(self, now: float) -> int:
        return self.conn.execute("DELETE FROM senders WHERE at<=?", (now - DAY,)).rowcount

    @_mapped
    def scrub(self, force: bool = False) -> bool:
        """Truncate the WAL (old copies of delivered rows) when nothing is pending."""
        if not (self._scrub_needed or force) or self.pending() > 0:
            return False
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._scrub_needed = False
        return True

    @_mapped
    def stats_rows(self, since_day: str | None = None) -> list[tuple[str, str, str, int]]:
        query = "SELECT day, address, event, n FROM stats"
        args: tuple = ()
        if since_day:
            query += " WHERE day>=?"
            args = (since_day,)
        return list(self.conn.execute(query + " ORDER BY day, address, event", args))

    def close(self) -> None:
        if self._conn is None:
            return
        try:
            self.flush()
            self.scrub()
        finally:
            self._conn.close()
            self._conn = None


def load_or_create_key(state_dir: str | os.PathLike) -> bytes:
    """The state directory's HMAC key, created (atomically, mode 0600) on first use."""
    directory = Path(state_dir)
    path = directory / KEY_NAME
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            tmp = directory / f".{KEY_NAME}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, os.urandom(KEY_BYTES))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # fails if another process created it first: use theirs
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        key = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"sender key {path}: {exc.strerror or exc}") from None
    if len(key) != KEY_BYTES:
        raise StoreError(f"sender key {path}: expected {KEY_BYTES} bytes, found {len(key)}")
    return key


class AsyncStore:
    """Runs a Store's calls on one worker thread, off the event loop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mail-store")

    async def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def close(self) -> None:
        await self.run(self.store.close)
        self._pool.shutdown(wait=True)
