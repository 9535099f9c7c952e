"""``--pin``: keep tunnel clients on some CPUs and tunnel servers on others.

``--pin CLIENT:SERVER`` takes two CPU lists (``0``, ``0,1``, ``0-1``); a bare ``--pin``
means ``0:1`` (clients on CPU 0, servers on CPU 1). Pinning sets the affinity of every
thread of every process in a tree (``os.sched_setaffinity`` on each ``/proc/PID/task``
entry, what ``taskset -a -p`` does); threads and children started later inherit it. The
benchmarks pin again before every measurement, so a process forked since (sshd's session
child) is caught too. The load generator and the sink stay unpinned.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from dataclasses import dataclass

from _common import descendants

DEFAULT_SPEC = "0:1"


@dataclass(frozen=True)
class Pinning:
    clients: frozenset[int]
    servers: frozenset[int]

    def describe(self) -> str:
        return f"clients on CPU {fmt_cpus(self.clients)}, servers on CPU {fmt_cpus(self.servers)}"


def parse_cpus(text: str) -> frozenset[int]:
    """``0,2-3`` -> {0, 2, 3}."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty CPU in {text!r}")
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(f"not a CPU number or range: {part!r}")
        first, last = int(lo), int(hi) if dash else int(lo)
        if last < first:
            raise ValueError(f"backwards range {part!r}")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def fmt_cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def parse_pin(spec: str, available: frozenset[int] | set[int]) -> Pinning:
    """``CLIENT:SERVER`` CPU lists, each within ``available`` (this process's affinity)."""
    client, colon, server = spec.partition(":")
    if not colon:
        raise ValueError(f"--pin wants CLIENT:SERVER CPU lists, like {DEFAULT_SPEC}; got {spec!r}")
    pinning = Pinning(parse_cpus(client), parse_cpus(server))
    outside = (pinning.clients | pinning.servers) - set(available)
    if outside:
        raise ValueError(f"CPU {fmt_cpus(frozenset(outside))} is not available here "
                         f"(this process may run on {fmt_cpus(frozenset(available))})")
    return pinning


def pin_argument(value: str) -> Pinning:
    """argparse ``type=`` for ``--pin``."""
    try:
        return parse_pin(value, os.sched_getaffinity(0))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_pin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pin", nargs="?", const=DEFAULT_SPEC, type=pin_argument, metavar="CLIENT:SERVER",
                        help="pin tunnel client processes to the first CPU list and server processes to "
                             f"the second (bare --pin: {DEFAULT_SPEC}); see bench/README.md")


def pin_tree(pid: int, cpus: frozenset[int]) -> int:
    """Every thread of ``pid`` and its descendants onto ``cpus``; returns how many threads.
    Threads that end meanwhile are skipped."""
    pinned = 0
    for p in descendants(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(tid), cpus)
                pinned += 1
    return pinned


def allowed_cpus(tid: int) -> frozenset[int]:
    """The CPUs a thread may run on, as the kernel reports it (``Cpus_allowed_list``)."""
    with open(f"/proc/{tid}/status") as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                return parse_cpus(line.split(":", 1)[1].strip())
    raise ValueError(f"no Cpus_allowed_list for {tid}")
