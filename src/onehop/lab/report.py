"""Observations and how they are shown: a table per scenario, JSON, a PNG plot."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, TextIO

from ..core.api.protocols import TunnelProtocol
from .fet import FullyEncryptedTrafficRule
from .flows import Chain

if TYPE_CHECKING:
    from .flows import Censor, FlowTracker
    from .probing import ProberDriver


class RowSpec(Protocol):
    """What the notes read of a scenario row."""

    @property
    def protocol(self) -> str: ...
    @property
    def split_delay(self) -> float | None: ...


class RowFacts(Protocol):
    """What the notes read of a row that ran (the runner's ``RowRun``)."""

    @property
    def row(self) -> RowSpec: ...
    @property
    def censor(self) -> Censor: ...
    @property
    def tracker(self) -> FlowTracker: ...
    @property
    def driver(self) -> ProberDriver | None: ...
    @property
    def via(self) -> str: ...

JSON_KEYS = ("scenario", "censor", "protocol", "expected", "observed", "seconds_to_tunnel", "bytes")


@dataclass(frozen=True)
class Observation:
    scenario: str
    censor: str
    protocol: str
    expected: str             # pass | blocked
    observed: str             # pass | blocked
    seconds_to_tunnel: float | None
    bytes: int                # page bytes fetched intact through the tunnel
    notes: str = ""           # why: the censor's decisions, probe reactions (table only)

    @property
    def as_expected(self) -> bool:
        return self.expected == self.observed

    def to_json(self) -> dict:
        return {key: getattr(self, key) for key in JSON_KEYS}


# -- what happened in a row, in words ---------------------------------------------------

def _censors(censor) -> tuple:
    return censor.censors if isinstance(censor, Chain) else (censor,)


def _probe_summary(run: RowFacts) -> list[str]:
    if run.driver is None:
        return []
    lines = []
    for endpoint, target in run.driver.prober.targets.items():
        reactions = target.reactions.values()
        if not reactions:
            lines.append(f"{endpoint}: not probed yet")
            continue
        closes = Counter(r.close for r in reactions)
        answered = sum(1 for r in reactions if r.received)
        times = [r.seconds for r in reactions]
        replays = [k for k in target.reactions if k.startswith("R")]
        verdict = target.judgement.reason if target.judgement else "pending"
        lines.append(f"probed {endpoint}: {len(target.reactions)} probes ({len(replays)} replays), "
                     f"{answered} answered, close {dict(closes)} at {min(times):.2f}-{max(times):.2f}s"
                     f" -> {'CONFIRMED' if target.judgement and target.judgement.confirmed else 'not confirmed'}"
                     f" ({verdict})")
    return lines


def _fet_summary(run: RowFacts) -> list[str]:
    lines = []
    for censor in _censors(run.censor):
        if isinstance(censor, FullyEncryptedTrafficRule) and censor.analyses:
            kinds = Counter(a.exemption or "none (blocked)" for _, a in censor.analyses)
            lines.append("first packets exempted by: " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())))
    return lines


def row_notes(run: RowFacts) -> str:
    notes = []
    if run.row.protocol == TunnelProtocol.OSSH_PREFIX:
        notes.append("prefix " + (f"split {run.row.split_delay * 1000:.0f} ms" if run.row.split_delay else "unsplit"))
    blocks = [v for _, v in run.tracker.decisions if v.blocks]
    if blocks:
        reasons = Counter(f"{v.censor}: {v.reason}" for v in blocks)
        top, count = reasons.most_common(1)[0]
        flows = "1 flow" if len(blocks) == 1 else f"{len(blocks)} flows"
        notes.append(f"{flows} blocked, e.g. {top}" + (f" (x{count})" if count > 1 else ""))
    notes += _fet_summary(run) + _probe_summary(run)
    if run.via:
        notes.append(f"tunnel via {run.via}")
    return "; ".join(notes)


# -- presentation -------------------------------------------------------------------------

def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_table(observations: list[Observation], out: TextIO, notes: bool = True) -> None:
    """One table per scenario: protocol x censor, connected or not, time, bytes."""
    for scenario in dict.fromkeys(o.scenario for o in observations):
        rows = [o for o in observations if o.scenario == scenario]
        head = ("censor", "protocol", "expected", "observed", "tunnel s", "bytes", "")
        cells = [(o.censor, o.protocol, o.expected, o.observed, _seconds(o.seconds_to_tunnel),
                  str(o.bytes), "ok" if o.as_expected else "MISMATCH") for o in rows]
        widths = [max(len(r[i]) for r in [head, *cells]) for i in range(len(head))]
        print(f"\n== {scenario} ==", file=out)
        for line in [head, tuple("-" * w for w in widths), *cells]:
            print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip(), file=out)
        if notes:
            for o in rows:
                if o.notes:
                    print(f"   * {o.censor} / {o.protocol}: {o.notes}", file=out)


def write_json(observations: Iterable[Observation], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump([o.to_json() for o in observations], f, indent=2)
        f.write("\n")


def _bar_text(o: Observation) -> str:
    if o.observed == "pass":
        text = f"{o.seconds_to_tunnel:.2f} s" if o.seconds_to_tunnel is not None else "passed"
    elif o.seconds_to_tunnel is not None:
        text = f"blocked (tunnel at {o.seconds_to_tunnel:.2f} s, then cut)"
    else:
        text = "blocked"
    return text + ("" if o.as_expected else "  UNEXPECTED")


def write_plot(observations: list[Observation], path: str, deadline: float) -> None:
    """Time to the first tunnel per row, one panel per scenario; blocked rows are drawn
    hatched to the establishment deadline."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(o.scenario for o in observations))
    groups = [[o for o in observations if o.scenario == s] for s in scenarios]
    fig, axes = plt.subplots(len(groups), 1, sharex=True, squeeze=False,
                             figsize=(10, 0.75 * len(groups) + 0.3 * len(observations) + 0.8),
                             gridspec_kw={"height_ratios": [len(g) + 0.6 for g in groups]})
    for ax, scenario, group in zip(axes[:, 0], scenarios, groups):
        positions = list(range(len(group)))[::-1]
        for y, o in zip(positions, group):
            passed = o.observed == "pass"
            width = o.seconds_to_tunnel if passed and o.seconds_to_tunnel is not None else deadline
            ax.barh(y, width, color="#3a7d44" if passed else "#c0392b", hatch="" if passed else "//",
                    edgecolor="black", linewidth=0.4, height=0.7)
            x = width + deadline * 0.01 if passed else deadline * 0.02
            ax.text(x, y, _bar_text(o), va="center", fontsize=8,
                    bbox=None if passed else {"facecolor": "white", "edgecolor": "none", "pad": 1})
        ax.set_yticks(positions, [f"{o.censor} | {o.protocol}" for o in group], fontsize=8)
        ax.set_ylim(-0.6, len(group) - 0.4)
        ax.set_title(scenario, fontsize=9, loc="left", fontweight="bold")
        ax.grid(axis="x", linestyle=":", linewidth=0.5)
    last = axes[-1, 0]
    last.set_xlim(0, deadline * 1.05)
    last.set_xlabel(f"seconds to first tunnel (red, hatched: blocked -- no usable tunnel within {deadline:g} s)")
    fig.suptitle("onehop censorship lab: time to connect", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
