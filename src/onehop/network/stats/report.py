"""``stats report``: connections, unique users and bytes per day, and likely blocks.

* **connections**: ``server_tunnel`` events whose handshake completed;
* **unique users**: ``unique_user`` events, which a server logs for a client's first
  connected request of a UTC day whose ``last_connected`` is before that day (Psiphon's
  trick: no identifier is ever stored);
* **bytes**: up + down of every ``server_tunnel``.

Each is given per day by region, channel, sponsor and server. Tunnels the deploy check
makes (client platform ``onehop_deploy_check``) are not counted.

**Likely blocks**: for every (server, region), this week's daily mean of connections
(the 7 days ending ``until``) against the week before. A pair is flagged when the
previous mean was at least ``min_daily`` and this week's is below ``ratio`` of it. A
server that still logged events in the last two days is reachable, so its collapse in
one region is a ``likely block``; a server with no events at all lately is ``silent``
(down, or its logs were not ingested) rather than blocked.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..models import Channel, Host, Server, Sponsor, StatsEvent

DEPLOY_CHECK_PLATFORM = "onehop_deploy_check"
DIMENSIONS = {"region": StatsEvent.region, "channel": StatsEvent.channel_id, "sponsor": StatsEvent.sponsor_id,
              "server": StatsEvent.server_id}
WEEK = 7


@dataclass(frozen=True)
class BlockCriteria:
    ratio: float = 0.3
    min_daily: float = 10.0


def _counted():
    return sa.and_(StatsEvent.client_platform != DEPLOY_CHECK_PLATFORM,
                   StatsEvent.event_name.in_(("server_tunnel", "unique_user")))


def _measures():
    tunnel = StatsEvent.event_name == "server_tunnel"
    completed = sa.and_(tunnel, sa.func.coalesce(StatsEvent.handshake_completed, sa.true()))
    return (sa.func.sum(sa.case((completed, 1), else_=0)).label("connections"),
            sa.func.sum(sa.case((StatsEvent.event_name == "unique_user", 1), else_=0)).label("unique_users"),
            sa.func.sum(sa.case((tunnel, StatsEvent.bytes_up + StatsEvent.bytes_down), else_=0)).label("bytes"))


def _day(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def daily(session: Session, start: date, until: date, dimension: str | None) -> list[dict]:
    """Rows of {day, <dimension>, connections, unique_users, bytes}, by day then key."""
    keys = [StatsEvent.day] + ([DIMENSIONS[dimension]] if dimension else [])
    query = (sa.select(*keys, *_measures()).where(StatsEvent.day.between(start, until), _counted())
             .group_by(*keys).order_by(*keys))
    rows = []
    for found in session.execute(query):
        item: dict[str, Any] = {"day": _day(found[0]).isoformat()}
        if dimension:
            item[dimension] = found[1] or None  # unknown (an event without the field)
        item.update(connections=int(found.connections or 0), unique_users=int(found.unique_users or 0),
                    bytes=int(found.bytes or 0))
        rows.append(item)
    return rows


def _names(session: Session) -> dict[str, dict[str, str]]:
    return {"channel": dict(session.execute(sa.select(Channel.id, Channel.name)).all()),
            "sponsor": dict(session.execute(sa.select(Sponsor.id, Sponsor.name)).all()),
            "server": dict(session.execute(sa.select(Server.id, Host.name).join(Host)).all())}


def _pair_counts(session: Session, start: date, until: date) -> dict[tuple[str, str | None], dict[date, int]]:
    completed = sa.func.coalesce(StatsEvent.handshake_completed, sa.true())
    query = (sa.select(StatsEvent.server_id, StatsEvent.region, StatsEvent.day, sa.func.count())
             .where(StatsEvent.day.between(start, until), StatsEvent.event_name == "server_tunnel", completed,
                    StatsEvent.client_platform != DEPLOY_CHECK_PLATFORM, StatsEvent.server_id.is_not(None))
             .group_by(StatsEvent.server_id, StatsEvent.region, StatsEvent.day))
    series: dict[tuple[str, str | None], dict[date, int]] = defaultdict(dict)
    for server_id, region, day, count in session.execute(query):
        series[(str(server_id), region)][_day(day)] = count  # never None: filtered above
    return series


def _last_event_days(session: Session) -> dict[str, date]:
    query = sa.select(StatsEvent.server_id, sa.func.max(StatsEvent.day)).where(
        StatsEvent.server_id.is_not(None)).group_by(StatsEvent.server_id)
    return {str(server_id): _day(day) for server_id, day in session.execute(query)}  # None filtered above


def _since(series: dict[date, int], start: date, threshold: float) -> str | None:
    """The first day of this week after which every day stayed below ``threshold``."""
    since = None
    for n in range(WEEK):
        day = start + timedelta(days=n)
        if series.get(day, 0) < threshold:
            since = since or day
        else:
            since = None
    return since.isoformat() if since else None


def likely_blocks(session: Session, until: date, criteria: BlockCriteria = BlockCriteria()) -> list[dict]:
    this_start, previous_start = until - timedelta(days=WEEK - 1), until - timedelta(days=2 * WEEK - 1)
    series = _pair_counts(session, previous_start, until)
    last_days, hosts = _last_event_days(session), _names(session)["server"]
    flagged = []
    for (server_id, region), counts in sorted(series.items()):
        previous = sum(c for d, c in counts.items() if d < this_start) / WEEK
        current = sum(c for d, c in counts.items() if d >= this_start) / WEEK
        if previous < criteria.min_daily or current >= criteria.ratio * previous:
            continue
        last = last_days.get(server_id)
        alive = last is not None and last >= until - timedelta(days=1)
        flagged.append({"server": server_id, "host": hosts.get(server_id), "region": region,
                        "previous_daily_mean": round(previous, 1), "daily_mean": round(current, 1),
                        "ratio": round(current / previous, 3), "kind": "likely block" if alive else "silent",
                        "since": _since(counts, this_start, criteria.ratio * previous),
                        "last_event_day": last.isoformat() if last else None,
                        "series": {(previous_start + timedelta(days=n)).isoformat():
                                   counts.get(previous_start + timedelta(days=n), 0) for n in range(2 * WEEK)}})
    return flagged


def build_report(session: Session, until: date, days: int, criteria: BlockCriteria = BlockCriteria()) -> dict:
    start = until - timedelta(days=days - 1)
    names = _names(session)
    report = {"from": start.isoformat(), "until": until.isoformat(), "days": days,
              "totals": daily(session, start, until, None)}
    for dimension in DIMENSIONS:
        rows = daily(session, start, until, dimension)
        for item in rows:
            if dimension in names:
                label = "host" if dimension == "server" else "name"
                item[label] = names[dimension].get(item[dimension])
        report[f"by_{dimension}"] = rows
    report["likely_blocks"] = likely_blocks(session, until, criteria)
    report["block_criteria"] = {"ratio": criteria.ratio, "min_daily": criteria.min_daily,
                                "this_week": [(until - timedelta(days=WEEK - 1)).isoformat(), until.isoformat()]}
    return report


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)
