"""``stats ingest``: server event logs -> ``stats_events``, idempotently.

Each log file is known by (the host that wrote it, the SHA-256 of its first line, the
server ID its path names, if any) and remembered with how many bytes were consumed (always up to a line end)
and the SHA-256 of those bytes. Ingesting again reads only what follows, after checking
that the consumed prefix is still the same; a file that grew adds its new complete
lines; a trailing partial line waits for the next run; a rotated (renamed) file is
recognised by its first line; a file whose ingested part changed is reported and
skipped, never counted twice. Each chunk is stored in one transaction together with the
new offset, so an interrupted ingest never stores a line twice and a concurrent one
skips what the other is doing.

Only event logs are read: a file is one when its first line is a server event (a JSON
object with an ``event_name`` and a timestamp, as ``onehop server run`` writes to its
LogFilename, whatever the file is called), or, while that line is still being written,
when it starts with ``{``. Anything else below the folder (``server.json``, builds,
notes) is skipped and counted, never parsed line by line.

Server IDs: the first path component (or file stem) that names one of the host's
servers (``deploy`` writes ``<root>/logs/<server id>/events.jsonl``); else the host's
only server at the time of the event; else the one whose port for the relay protocol
is ``dial_port_number``; else none (the event still counts for its host).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, insert, select, tuple_

from ...core.api.protocols import TunnelProtocol
from .. import audit
from ..db import Database
from ..errors import Conflict
from ..models import Host, Server, StatsEvent, StatsLogFile
from .lines import Malformed, complete_lines, host_of, parse, row
from .sources import FIRST_LINE_MAX, LogFile, LogSource

CHUNK = 32 * 1024 * 1024
MAX_EXAMPLES = 10
GRACE = timedelta(days=1)


@dataclass(frozen=True)
class ServerInfo:
    id: str
    host: str
    ossh_port: int | None
    ssh_port: int | None
    created_at: datetime
    retired_at: datetime | None


class ServerMap:
    """Every server ever (retired ones too), by host, to name the server of an event."""

    def __init__(self, servers: list[ServerInfo]) -> None:
        self.by_id = {s.id.lower(): s for s in servers}
        self.by_host: dict[str, list[ServerInfo]] = {}
        for server in servers:
            self.by_host.setdefault(server.host.lower(), []).append(server)

    @classmethod
    def load(cls, db: Database) -> ServerMap:
        with db.transaction() as session:
            rows = session.execute(select(Server.id, Host.name, Server.ossh_port, Server.ssh_port,
                                          Server.created_at, Server.retired_at).join(Host)).all()
        return cls([ServerInfo(*r) for r in rows])

    def from_path(self, path: str, host: str) -> str | None:
        parts = path.split("/")
        candidates = parts[:-1] + [parts[-1].split(".")[0]]
        for candidate in reversed(candidates):
            server = self.by_id.get(candidate.lower())
            if server is not None and (not host or server.host.lower() == host.lower()):
                return server.id
        return None

    def resolve(self, values: dict, event: dict, file_server: str | None) -> str | None:
        host = values["host_id"].lower()
        if file_server is not None and (not host or self.by_id[file_server.lower()].host.lower() == host):
            return file_server
        servers = self.by_host.get(host, [])
        at = values["at"]
        live = [s for s in servers
                if s.created_at - GRACE <= at and (s.retired_at is None or at <= s.retired_at + GRACE)]
        if len(live or servers) == 1:
            return (live or servers)[0].id
        port = event.get("dial_port_number")
        protocol = values["relay_protocol"]
        port_field = "ossh_port" if protocol == TunnelProtocol.OSSH else "ssh_port"
        matches = [s for s in live or servers if isinstance(port, int) and port == getattr(s, port_field)]
        return matches[0].id if len(matches) == 1 else None


@dataclass
class IngestReport:
    source: str
    files: int = 0
    new_files: int = 0
    unchanged_files: int = 0
    events: Counter = field(default_factory=Counter)
    unresolved_events: int = 0
    malformed: int = 0
    malformed_reasons: Counter = field(default_factory=Counter)
    malformed_examples: list[str] = field(default_factory=list)
    pending: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # files that are not event logs
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"source": self.source, "files": self.files, "new_files": self.new_files,
                "unchanged_files": self.unchanged_files, "events_added": dict(sorted(self.events.items())),
                "events_added_total": sum(self.events.values()), "unresolved_events": self.unresolved_events,
                "malformed_lines": self.malformed, "malformed_reasons": dict(self.malformed_reasons),
                "malformed_examples": self.malformed_examples, "pending_partial_lines": self.pending,
                "skipped_files": len(self.skipped), "skipped_examples": self.skipped[:MAX_EXAMPLES],
                "warnings": self.warnings, "errors": self.errors}


@dataclass
class FilePlan:
    """One file to read: which record it continues and from where."""

    log: LogFile
    host_id: str
    identity: str
    locator: str
    server_id: str | None
    offset: int = 0
    new: bool = True


class Ingest:
    def __init__(self, db: Database, source: LogSource, servers: ServerMap, ctx: audit.Context) -> None:
        self.db, self.source, self.servers, self.ctx = db, source, servers, ctx
        self.report = IngestReport(source.description)

    async def run(self) -> IngestReport:
        files = [f for f in await self.source.files() if f.size > 0]
        heads = await self.source.first_lines([f.path for f in files]) if files else {}
        plans = [p for p in (self._plan(f, heads[f.path]) for f in files) if p is not None]
        self.report.files = len(files) - len(self.report.skipped)
        await self._match_records(plans)
        for plan in plans:
            if plan.new:
                self.report.new_files += 1
            if plan.offset == plan.log.size or not await self._ingest_file(plan):
                self.report.unchanged_files += 1  # nothing new (a partial last line at most)
        return self.report

    # -- which record a file continues ----------------------------------------------------

    def _plan(self, log: LogFile, head: bytes) -> FilePlan | None:
        looks_like_json = head.lstrip().startswith(b"{")
        if not head.endswith(b"\n"):
            if looks_like_json and len(head) < FIRST_LINE_MAX:
                self.report.pending.append({"path": log.path, "bytes": log.size})  # not even one line yet
                return None
            if not (looks_like_json and b'"event_name"' in head):  # a first line of 64 KiB and more
                self.report.skipped.append(log.path)
                return None
        event, _ = parse(complete_lines(head, 0)[0][0]) if head.endswith(b"\n") else (None, [])
        if event is None and head.endswith(b"\n"):
            self.report.skipped.append(log.path)  # server.json, a build, notes: not an event log
            return None
        host = host_of(event) if event else (self.source.host_name or "")
        if self.source.host_name and event and host.lower() != self.source.host_name.lower():
            self.report.warnings.append(f"{log.path}: written by host_id {host!r}, read from host "
                                        f"{self.source.host_name}")
        server = self.servers.from_path(log.path, host)
        return FilePlan(log, host, hashlib.sha256(head).hexdigest(), server or "", server)

    def _records(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str, str], StatsLogFile]:
        if not keys:
            return {}
        with self.db.transaction() as session:
            query = select(StatsLogFile).where(
                tuple_(StatsLogFile.host_id, StatsLogFile.first_line_sha256).in_(sorted(keys)))
            return {(r.host_id, r.first_line_sha256, r.locator): r for r in session.scalars(query)}

    async def _match_records(self, plans: list[FilePlan]) -> None:
        """Continue each file from its record, if its ingested prefix is still the same."""
        records = self._records({(p.host_id, p.identity) for p in plans})
        known = [(p, records[(p.host_id, p.identity, p.locator)]) for p in plans
                 if (p.host_id, p.identity, p.locator) in records]
        hashes = await self.source.prefix_sha256({p.log.path: r.consumed_bytes for p, r in known})
        for plan, record in known:
            plan.new = False
            if hashes.get(plan.log.path) == record.prefix_sha256:
                plan.offset = record.consumed_bytes
            else:
                plan.offset = plan.log.size  # nothing read from it: no event is ever counted twice
                self.report.errors.append(
                    f"{plan.log.path}: starts like {record.path} (ingested before) but its first "
                    f"{record.consumed_bytes} bytes changed (truncated or rewritten?): skipped. If it is "
                    "another server's log, put it in a directory named after that server's ID")

    # -- reading and storing ---------------------------------------------------------------

    async def _ingest_file(self, plan: FilePlan) -> bool:
        """Store the file's new complete lines; True if any were consumed."""
        offset, skip_long = plan.offset, False
        while offset < plan.log.size:
            chunk = await self.source.read(plan.log.path, offset, min(CHUNK, plan.log.size - offset))
            if not chunk:
                break
            lines, consumed = complete_lines(chunk, offset)
            bad: list[Malformed] = []
            if skip_long and lines:  # the rest of a line longer than a whole chunk
                lines, skip_long = lines[1:], False
            if consumed == 0:
                if len(chunk) < CHUNK:
                    self.report.pending.append({"path": plan.log.path, "bytes": len(chunk)})
                    break
                consumed, skip_long = len(chunk), True
                bad.append(Malformed(offset, f"a line longer than {CHUNK} bytes"))
            rows = self._rows(lines, plan, bad)
            new_offset = offset + consumed
            digest = (await self.source.prefix_sha256({plan.log.path: new_offset}))[plan.log.path]
            try:
                stored = digest is not None and self._commit(plan, rows, len(bad), offset, new_offset, digest)
            except Conflict:  # another ingest created the same file's record just now
                stored = False
            if not stored:
                self.report.errors.append(f"{plan.log.path}: changed while being read (or ingested "
                                          "concurrently): try again")
                break
            self._count(plan, rows, bad)
            offset = new_offset
            if consumed < len(chunk):
                self.report.pending.append({"path": plan.log.path, "bytes": len(chunk) - consumed})
                break
        return offset > plan.offset

    def _rows(self, lines, plan: FilePlan, bad: list[Malformed]) -> list[dict]:
        rows = []
        for line in lines:
            event, malformed = parse(line)
            bad.extend(malformed)
            if event is None:
                continue
            values = row(event)
            values["host_id"] = values["host_id"] or plan.host_id
            values.update(line_offset=line.offset,
                          server_id=self.servers.resolve(values, event, plan.server_id))
            rows.append(values)
        return rows

    def _count(self, plan: FilePlan, rows: list[dict], bad: list[Malformed]) -> None:
        for values in rows:
            self.report.events[values["event_name"]] += 1
            self.report.unresolved_events += values["server_id"] is None
        for item in bad:
            self.report.malformed += 1
            self.report.malformed_reasons[item.reason] += 1
            if len(self.report.malformed_examples) < MAX_EXAMPLES:
                self.report.malformed_examples.append(f"{plan.log.path} at byte {item.offset}: {item.reason}")

    def _commit(self, plan: FilePlan, rows: list[dict], malformed: int, old: int, new: int, digest: str) -> bool:
        with self.db.transaction() as session:
            record = session.scalars(select(StatsLogFile).where(
                StatsLogFile.host_id == plan.host_id, StatsLogFile.first_line_sha256 == plan.identity,
                StatsLogFile.locator == plan.locator).with_for_update()).one_or_none()
            if record is None:
                if old != 0:
                    return False
                record = StatsLogFile(host_id=plan.host_id, first_line_sha256=plan.identity, locator=plan.locator,
                                      server_id=plan.server_id, source="", path="", consumed_bytes=0,
                                      prefix_sha256=hashlib.sha256(b"").hexdigest(), events=0, malformed=0,
                                      first_ingested_at=self.ctx.now, last_ingested_at=self.ctx.now)
                session.add(record)
                session.flush()
            elif record.consumed_bytes != old:
                return False
            if rows:
                session.execute(insert(cast(Table, StatsEvent.__table__)), [dict(r, file_id=record.id) for r in rows])
            record.consumed_bytes, record.prefix_sha256 = new, digest
            record.events += len(rows)
            record.malformed += malformed
            record.source, record.path = self.source.description[:500], plan.log.path[:1000]
            record.last_ingested_at = self.ctx.now
        return True


def record_audit(db: Database, ctx: audit.Context, report: IngestReport) -> None:
    with db.transaction() as session:
        audit.record(session, ctx, "stats.ingest", "stats", [], source=report.source, files=report.files,
                     events=sum(report.events.values()), malformed=report.malformed, errors=len(report.errors))
