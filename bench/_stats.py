"""The arithmetic of the benchmarks, apart from any process or socket: medians and their
spread over rounds, the interleaved order of rounds, CPU seconds per GiB, ratios, and the
verdict of a figure against a stated target.

A *round* runs every system once; rounds repeat that, so drift on a shared machine (other
work starting or stopping) touches every system alike. Each figure is the median of its
rounds, printed with the spread (lowest and highest round) so a reader sees how far one
run can be trusted.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

GIB = 1 << 30
MIN_ROUNDS = 3

T = TypeVar("T")


@dataclass(frozen=True)
class Spread:
    """The median of some rounds and the lowest and highest of them."""

    median: float
    low: float
    high: float
    n: int

    @property
    def relative(self) -> float:
        """(high - low) / median: 0.10 means the rounds lie within 10 % of the median."""
        return (self.high - self.low) / self.median if self.median else float("inf")

    def fmt(self, digits: int = 1) -> str:
        """``median [low-high]``; a single round shows only its value."""
        if self.n == 1:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} [{self.low:.{digits}f}-{self.high:.{digits}f}]"

    def as_dict(self) -> dict:
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.n}


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("no rounds to summarize")
    return Spread(statistics.median(values), min(values), max(values), len(values))


def iqr(values: Sequence[float]) -> tuple[float, float]:
    """First and third quartile (inclusive method: with 3 values, the midpoints
    between the lowest and the median and between the median and the highest)."""
    if len(values) < 2:
        raise ValueError("quartiles need at least two values")
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def interleaved(systems: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """(round, system) in run order: every system once per round; each round starts one
    system further along, so no system is always the first after a pause or always
    follows the same neighbour."""
    n = len(systems)
    for r in range(rounds):
        for i in range(n):
            yield r, systems[(r + i) % n]


def cpu_seconds_per_gib(cpu_seconds: float, nbytes: int) -> float:
    """CPU seconds a process spent per GiB (2^30 bytes) it moved."""
    if nbytes <= 0:
        raise ValueError("no bytes moved")
    return cpu_seconds / (nbytes / GIB)


def tick_per_gib(nbytes: int, ticks_per_second: int) -> float:
    """The resolution of a CPU s/GiB figure: /proc counts CPU time in clock ticks, so at
    ``nbytes`` per test one tick more or less moves the figure by this much."""
    return cpu_seconds_per_gib(1 / ticks_per_second, nbytes)


def cpu_per_wall(cpu_seconds: float, wall_seconds: float) -> float:
    """CPU seconds per wall-clock second: above 1.0 the processes used more than one core."""
    if wall_seconds <= 0:
        raise ValueError("no time elapsed")
    return cpu_seconds / wall_seconds


def busy_processes(before: dict[int, float], after: dict[int, float], share: float = 0.10) -> int:
    """How many processes (CPU seconds by pid, two snapshots) each used at least ``share``
    of what all of them used in between: the processes that did the work, not the idle
    helpers beside them. A process that started in between counts from zero."""
    used = {pid: cpu - before.get(pid, 0.0) for pid, cpu in after.items()}
    total = sum(u for u in used.values() if u > 0)
    if total <= 0:
        return 0
    return sum(1 for u in used.values() if u >= share * total)


def mbps(nbytes: int, seconds: float) -> float:
    """MB/s, 10^6 bytes per second."""
    return nbytes / seconds / 1e6


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def verdict(value: float | None, target: float, better: str) -> str:
    """'met' or 'missed' for ``value`` against ``target``; ``better`` is 'higher'
    (value must reach at least the target), 'lower' (at most) or 'above' (strictly more)."""
    if value is None:
        return "not measured"
    ok = {"higher": value >= target, "lower": value <= target, "above": value > target}[better]
    return "met" if ok else "missed"


def rounds_argument(text: str) -> int:
    """argparse ``type=`` for ``--rounds``: a whole number, at least ``MIN_ROUNDS``."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < MIN_ROUNDS:
        raise argparse.ArgumentTypeError(f"at least {MIN_ROUNDS} rounds: a median of fewer hides the spread")
    return n


def add_rounds_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", "--repeat", dest="rounds", type=rounds_argument, default=MIN_ROUNDS,
                        help=f"interleaved rounds (each runs every system once); figures are their median "
                             f"with the spread (default and minimum {MIN_ROUNDS})")
