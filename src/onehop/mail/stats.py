"""``onehop mail stats``: replies and refusals per UTC day and address (ours).

Reads the state database (the responder may be running: WAL readers do not block it).
Rows: ``answered`` (requests that got replies queued), ``delivered`` (reply messages the
relay accepted), ``rejected:<reason>`` (requests refused: unknown_recipient, oversize,
auto_submitted, rate_limit, dkim_fail, ...) and ``failed:<reason>`` (queued replies given
up: relay_refused, expired, ...), reasons from ``errors.MailReason``; rows counted before that
vocabulary (kebab-case, ``rate-limit``) are read as today's spelling and add up with it.
``queued`` is what waits in the outbox right now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MailReason
from .store import ANSWERED, DELIVERED, Store


@dataclass
class DayRow:
    day: str
    address: str
    answered: int = 0
    delivered: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"day": self.day, "address": self.address, "answered": self.answered,
                "delivered": self.delivered, "rejected": dict(sorted(self.rejected.items())),
                "failed": dict(sorted(self.failed.items()))}


@dataclass
class Report:
    rows: list[DayRow]
    queued: int

    def as_json(self) -> dict:
        totals = DayRow("all", "all")
        for row in self.rows:
            _add(totals, row)
        total = totals.as_json()
        del total["day"], total["address"]
        return {"days": [r.as_json() for r in self.rows], "totals": total, "queued": self.queued}


def _add(into: DayRow, row: DayRow) -> None:
    into.answered += row.answered
    into.delivered += row.delivered
    for src, dst in ((row.rejected, into.rejected), (row.failed, into.failed)):
        for key, n in src.items():
            dst[key] = dst.get(key, 0) + n


def collect(state_dir: str | Path, since_day: str | None = None) -> Report:
    store = Store(state_dir, create=False)
    try:
        raw = store.stats_rows(since_day)
        queued = store.pending()
    finally:
        store.close()
    return Report(rows_from(raw), queued)


def rows_from(raw: list[tuple[str, str, str, int]]) -> list[DayRow]:
    rows: dict[tuple[str, str], DayRow] = {}
    for day, address, event, n in raw:
        row = rows.setdefault((day, address), DayRow(day, address))
        if event == ANSWERED:
            row.answered += n
        elif event == DELIVERED:
            row.delivered += n
        else:
            kind, _, reason = event.partition(":")
            reason = MailReason.from_record(reason)  # old counters say rate-limit, new rate_limit
            target = row.failed if kind == "failed" else row.rejected
            target[reason or kind] = target.get(reason or kind, 0) + n
    return [rows[k] for k in sorted(rows)]


def format_json(report: Report) -> str:
    return json.dumps(report.as_json(), indent=2, sort_keys=True)


def format_table(report: Report) -> str:
    header = ("DAY", "ADDRESS", "ANSWERED", "DELIVERED", "REJECTED", "FAILED")
    lines = [header]
    for r in report.rows:
        lines.append((r.day, r.address, str(r.answered), str(r.delivered), _reasons(r.rejected),
                      _reasons(r.failed)))
    if len(lines) == 1:
        return f"no requests recorded yet; {report.queued} replies queued"
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    total = report.as_json()["totals"]
    out.append("")
    out.append(f"total: {total['answered']} answered, {total['delivered']} delivered, "
               f"{sum(total['rejected'].values())} rejected, {sum(total['failed'].values())} failed; "
               f"{report.queued} replies queued")
    return "\n".join(out)


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "-"
