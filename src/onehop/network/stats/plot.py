"""``stats report --plot FILE.png``: the report as four charts (matplotlib, Agg backend).

Connections and unique users per day by region, bytes per day by server, and the daily
connections of every likely block over the two weeks compared (the week boundary
marked). The largest series are drawn; the rest are summed as "other".
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from pathlib import Path

from ...extras import require
from ..errors import NetworkError

TOP = 8


def _ranking(rows: list[dict], key: str, measure: str) -> list[str]:
    """Keys by their total, largest first (the same order, so colour, in every panel)."""
    totals: dict[str, float] = defaultdict(float)
    for row in rows:
        totals[str(row[key])] += row[measure]
    return sorted(totals, key=lambda k: (-totals[k], k))


def _series(rows: list[dict], key: str, measure: str, days: list[date],
            ranked: list[str] | None = None) -> dict[str, list[float]]:
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for row in rows:
        table[str(row[key])][row["day"]] = row[measure]
    ranked = [k for k in (ranked or _ranking(rows, key, measure)) if k in table]
    shown, rest = ranked[:TOP], ranked[TOP:]
    out = {k: [table[k].get(d.isoformat(), 0) for d in days] for k in shown}
    if rest:
        out["other"] = [sum(table[k].get(d.isoformat(), 0) for k in rest) for d in days]
    return out


def _noon_before(day: date) -> datetime:
    return datetime.combine(day, time()) - timedelta(hours=12)


def _date_axis(ax, days: list[date]) -> None:
    import matplotlib.dates as mdates
    ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, len(days) // 10)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
    if days:
        ax.set_xlim(_noon_before(days[0]), _noon_before(days[-1]) + timedelta(days=1))
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)


def _lines(ax, days: list[date], series: dict[str, list[float]], title: str, ylabel: str,
           colours: dict[str, str]) -> None:
    for label, values in series.items():
        ax.plot(days, values, marker="o", markersize=3, linewidth=1.5, label=label, color=colours.get(label))
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if series:
        ax.legend(fontsize=7, ncol=2)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    _date_axis(ax, days)


def _scaled_bytes(series: dict[str, list[float]]) -> tuple[dict[str, list[float]], str]:
    peak = max((max(v) for v in series.values() if v), default=0)
    for power, unit in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        if peak >= 1024 ** power:
            return {k: [x / 1024 ** power for x in v] for k, v in series.items()}, unit
    return series, "bytes"


def _blocks(ax, report: dict) -> None:
    blocks = report["likely_blocks"]
    ax.set_title("likely blocks: connections per day, previous week | this week")
    if not blocks:
        ax.text(0.5, 0.5, "no likely blocks", ha="center", va="center", transform=ax.transAxes)
        return
    days: list[date] = []
    for block in blocks[:TOP]:
        days = [date.fromisoformat(d) for d in block["series"]]
        ax.plot(days, list(block["series"].values()), marker="o", markersize=3,
                label=f"{block['server']} / {block['region']} ({block['kind']})")
    boundary = date.fromisoformat(report["block_criteria"]["this_week"][0])
    ax.axvline(_noon_before(boundary), color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel("connections")
    ax.legend(fontsize=7)
    _date_axis(ax, days)


def plot_report(report: dict, path: Path) -> None:
    require("matplotlib", "--plot")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    start, until = date.fromisoformat(report["from"]), date.fromisoformat(report["until"])
    days = [start + timedelta(days=n) for n in range((until - start).days + 1)]
    fig, axes = plt.subplots(2, 2, figsize=(14, 9), constrained_layout=True)
    regions = _ranking(report["by_region"], "region", "connections")
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = {r: palette[i % len(palette)] for i, r in enumerate(regions[:TOP] + ["other"])}
    _lines(axes[0][0], days, _series(report["by_region"], "region", "connections", days, regions),
           "connections per day by region", "connections", colours)
    _lines(axes[0][1], days, _series(report["by_region"], "region", "unique_users", days, regions),
           "unique users per day by region", "unique users", colours)
    volume, unit = _scaled_bytes(_series(report["by_server"], "server", "bytes", days))
    _lines(axes[1][0], days, volume, "bytes per day by server", unit, {})
    _blocks(axes[1][1], report)
    fig.suptitle(f"onehop network, {report['from']} to {report['until']} (UTC)")
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise NetworkError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
