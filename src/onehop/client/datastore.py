"""The client's datastore: server entries, affinity and small state, in SQLite.

Entries are keyed by IP address with their source (EMBEDDED, REMOTE, DISCOVERY,
TARGET) and timestamp. Import rules follow Psiphon: remote and discovery imports
replace what is stored; other imports replace only a lower ``configurationVersion``;
entries the server reported invalid are pruned and leave a tombstone that blocks their
re-import from the embedded list. The data directory is private: made (or tightened to)
0700, its files 0600, said once through ``say`` when an existing one was looser.
With ``signature_public_key`` (ServerEntrySignaturePublicKey)
every entry, from any source, must carry a valid signature: unsigned and forged entries
are refused, and ``say`` hears about each kind once. WAL journaling and one transaction per batch keep
the file consistent across crashes: a bad list can never leave the store half-updated.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from datetime import datetime, timedelta, UTC
from collections.abc import Callable, Iterable

from ..core.serverentry import (ServerEntry, decode_server_entry, encode_server_entry_fields, rfc3339_timestamp,
                                verify_server_entry_signature)
from ..errors import ConfigError, ConfigProblem, OnehopError

SCHEMA_VERSION = 1
REPLACING_SOURCES = frozenset({"REMOTE", "DISCOVERY", "TARGET"})
PRUNE_MIN_AGE = timedelta(days=7)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS server_entries (
    ip_address TEXT PRIMARY KEY,
    tag TEXT NOT NULL,
    source TEXT NOT NULL,
    local_timestamp TEXT NOT NULL,
    configuration_version INTEGER NOT NULL DEFAULT 0,
    region TEXT NOT NULL DEFAULT '',
    encoded TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS server_entries_tag ON server_entries(tag);
CREATE TABLE IF NOT EXISTS pruned_tags (tag TEXT PRIMARY KEY, pruned_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS key_values (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS persistent_stats (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, record TEXT NOT NULL
);
"""


#: Files the client keeps in its data directory that hold server entries or secrets.
PRIVATE_FILES = ("datastore.sqlite", "datastore.sqlite-wal", "datastore.sqlite-shm", "notices.log",
                 "notices.log.1", "remote_server_list", "remote_server_list.part",
                 "remote_server_list.part.etag")


def make_private(data_dir: str, create: Iterable[str] = ()) -> str | None:
    """Make ``data_dir`` 0700 and its files 0600, creating ``create`` empty and private.

    Returns what was tightened (one sentence) or None. A directory that is shared by
    design (sticky, like /tmp) or not ours is left alone, and that is said instead.
    """
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    for path in create:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    info = os.stat(data_dir)
    loose_dir = stat.S_IMODE(info.st_mode) & 0o077
    if loose_dir and (info.st_mode & stat.S_ISVTX or info.st_uid != os.getuid()):
        return (f"{data_dir} is mode {stat.S_IMODE(info.st_mode):04o} and shared: left as is, but it holds "
                "server entries and credentials; choose a private --data-dir")
    tightened = [f"{data_dir} {stat.S_IMODE(info.st_mode):04o}"] if loose_dir else []
    if loose_dir:
        os.chmod(data_dir, 0o700)
    for name in PRIVATE_FILES:
        path = os.path.join(data_dir, name)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(path, 0o600)
            tightened.append(f"{name} {mode:04o}")
    if not tightened:
        return None
    return (f"made the data directory private (0700, files 0600): it holds server entries and credentials; "
            f"was {', '.join(tightened)}")


def _now() -> datetime:
    return datetime.now(UTC)


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)


class Datastore:
    """One SQLite file per data directory (``<data dir>/datastore.sqlite``)."""

    def __init__(self, data_dir: str, *, signature_public_key: str = "",
                 say: Callable[[str], None] | None = None) -> None:
        self._say = say or logging.getLogger(__name__).warning
        self.path = os.path.join(data_dir, "datastore.sqlite")
        tightened = make_private(data_dir, [self.path])  # which servers this user knows, and how to log in
        if tightened:
            self._say(tightened)
        self._signature_key = signature_public_key
        self._refused: dict[str, int] = {}  # "unsigned"/"forged" -> count in this batch
        self._said: set[str] = set()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise ConfigError([ConfigProblem(self.path, f"unusable client datastore: {exc}")]) from None
        self._cache: dict[str, ServerEntry] | None = None

    def close(self) -> None:
        self._db.close()

    # -- server entries ----------------------------------------------------------------

    def entries(self) -> list[ServerEntry]:
        if self._cache is None:
            cache = {}
            for ip, encoded in self._db.execute("SELECT ip_address, encoded FROM server_entries"):
                try:
                    cache[ip] = decode_server_entry(encoded)
                except OnehopError:
                    continue  # unreadable rows are skipped, never fatal
            self._cache = cache
        return list(self._cache.values())

    def import_entries(self, entries: Iterable[ServerEntry], source: str,
                       now: datetime | None = None) -> int:
        """Import a batch in one transaction; returns how many were stored."""
        stamp = rfc3339_timestamp(now or _now())
        stored = 0
        with self._transaction():
            for entry in entries:
                stored += self._import_one(entry, source, stamp)
        self._cache = None
        self._say_refused(source)
        return stored

    def _signed(self, entry: ServerEntry) -> bool:
        """No key: everything passes. With one, only a valid signature does."""
        if not self._signature_key:
            return True
        kind = "unsigned" if not entry.signature else "forged"
        if entry.signature:
            try:
                verify_server_entry_signature(entry, self._signature_key)
                return True
            except OnehopError:
                pass
        self._refused[kind] = self._refused.get(kind, 0) + 1
        return False

    def _say_refused(self, source: str) -> None:
        refused, self._refused = self._refused, {}
        for kind, count in refused.items():
            if kind not in self._said:
                self._said.add(kind)
                what = ("unsigned server entries" if kind == "unsigned"
                        else "server entries whose signature does not verify")
                self._say(f"refused {count} {what} ({source}): ServerEntrySignaturePublicKey is set, "
                                 "so only entries signed by the network's key are used (said once)")

    def _import_one(self, entry: ServerEntry, source: str, stamp: str) -> int:
        if not entry.tag:
            entry = entry.with_derived_tag()
        if not self._signed(entry):
            return 0  # an unsigned, forged or corrupted entry is never stored
        row = self._db.execute("SELECT configuration_version FROM server_entries WHERE ip_address=?",
                               (entry.ip_address,)).fetchone()
        if row is not None and source not in REPLACING_SOURCES and entry.configuration_version <= row[0]:
            return 0
        if source == "EMBEDDED" and self._db.execute("SELECT 1 FROM pruned_tags WHERE tag=?",
                                                     (entry.tag,)).fetchone():
            return 0
        timestamp = entry.local_timestamp if source in ("DISCOVERY",) and entry.local_timestamp else stamp
        entry = entry.with_local(source, timestamp)
        self._db.execute(
            "INSERT OR REPLACE INTO server_entries VALUES (?, ?, ?, ?, ?, ?, ?)",
            (entry.ip_address, entry.tag, source, timestamp, entry.configuration_version,
             entry.region, encode_server_entry_fields(entry)))
        return 1

    def prune_tags(self, tags: Iterable[str], now: datetime | None = None) -> int:
        """Delete entries the server says no longer exist (if older than 7 days)."""
        now = now or _now()
        pruned = 0
        with self._transaction():
            for tag in set(tags):
                row = self._db.execute("SELECT ip_address, local_timestamp FROM server_entries WHERE tag=?",
                                       (tag,)).fetchone()
                if row is None or now - _parse_time(row[1]) < PRUNE_MIN_AGE:
                    continue
                self._db.execute("DELETE FROM server_entries WHERE ip_address=?", (row[0],))
                self._db.execute("INSERT OR REPLACE INTO pruned_tags VALUES (?, ?)", (tag, rfc3339_timestamp(now)))
                pruned += 1
        self._cache = None
        return pruned

    def tags(self, limit: int = 1000) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT tag FROM server_entries ORDER BY RANDOM() LIMIT ?", (limit,))]

    # -- small state -------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM key_values WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO key_values VALUES (?, ?)", (key, value))

    def affinity(self) -> str | None:
        return self.get("affinity")

    def set_affinity(self, ip_address: str) -> None:
        self.set("affinity", ip_address)

    # -- persistent stats shipped in status requests ------------------------------------

    def add_stat(self, kind: str, record: dict) -> None:
        self._db.execute("INSERT INTO persistent_stats (kind, record) VALUES (?, ?)", (kind, json.dumps(record)))

    def pending_stats(self, limit: int = 100) -> list[tuple[int, str, dict]]:
        rows = self._db.execute("SELECT id, kind, record FROM persistent_stats ORDER BY id LIMIT ?", (limit,))
        return [(row_id, kind, json.loads(record)) for row_id, kind, record in rows]

    def delete_stats(self, ids: Iterable[int]) -> None:
        with self._transaction():
            self._db.executemany("DELETE FROM persistent_stats WHERE id=?", [(i,) for i in ids])

    def _transaction(self):
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
