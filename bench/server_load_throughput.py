#!/usr/bin/env python3
"""Loaded server throughput: several tunnel client processes upload (or, with
``--direction download``, download) at once through one server, onehop beside OpenSSH's
sshd in the same run.

One run starts, all on loopback:

* a sink (``_common.py sink``), the destination of every transfer;
* a private OpenSSH server (own host key, client key and sshd_config, aes128-gcm@openssh.com
  only) and four ``ssh -N -L`` processes, each its own session, forwarding a port to the sink;
* for each requested worker count (``--workers``, default ``1,default``) a onehop server
  (``onehop server run``, with ``--workers N`` only when N is asked for; ``default`` passes
  no option) and four onehop client processes (OSSH) with a SOCKS proxy each;

then, in interleaved rounds (each round runs every server once, the order rotating), starts
one 128 MiB upload through each of the four clients at once. Per server it prints the
aggregate MB/s (all bytes over the time from all streams connected to the last one
acknowledged), the server's CPU seconds per GiB (user+sys of its process tree, including
reaped children), the server's CPU seconds per wall-clock second (above 1.0: it used more
than one core), the four clients' CPU seconds per GiB together, each as the median
[lowest-highest] of the rounds, the ratios to sshd, and last the issue's targets: onehop
server CPU/GiB <= 1.3x sshd's, aggregate >= 0.9x sshd's with the default workers, and more
than 1.0 server CPU-s per wall-s with 2 workers.

``onehop server run --workers`` may be missing from this build: the script asks
``onehop server run --help`` and reports any requested worker count as "not supported by
this build" (the ``default`` server still runs).

    python bench/server_load_throughput.py                      # 4 x 128 MiB, 3 rounds
    python bench/server_load_throughput.py --mib 16 --workers default
    python bench/server_load_throughput.py --workers 1,2,default --rounds 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    BenchError, Connector, Processes, descendants, direct, finish_run, free_port, onehop_cli, port_accepts,
    process_cpu_seconds, signals_raise_keyboard_interrupt, start_private_sshd, transfer_each, tree_cpu_seconds,
    via_socks5,
    wait_until,
)
from _common import OPENSSH_INSTALL as INSTALL
from _pinning import Pinning, add_pin_option, pin_tree
from _stats import (
    Spread, add_rounds_option, busy_processes, cpu_per_wall, cpu_seconds_per_gib, fmt_ratio, interleaved, mbps, ratio,
    spread, tick_per_gib, verdict,
)
from throughput import (
    CIPHER, SINK_HOST, check_openssh, start_onehop_client, start_sink, start_ssh_forward,
)

ONEHOP_IP = "127.0.0.2"
CPU_TARGET = 1.3        # loaded onehop server CPU s/GiB over sshd's, at most
AGGREGATE_TARGET = 0.9  # loaded aggregate MB/s over sshd's with the default workers, at least
MULTICORE_TARGET = 1.0  # server CPU-s per wall-s with 2 workers, more than


# -- options ---------------------------------------------------------------------------

def parse_workers(text: str) -> list[int | None]:
    """``1,default`` -> [1, None]: one onehop server per entry; None passes no --workers."""
    found: list[int | None] = []
    for part in text.split(","):
        part = part.strip()
        if part == "default":
            value = None
        elif part.isdigit() and int(part) >= 1:
            value = int(part)
        else:
            raise ValueError(f"a worker count is a whole number >= 1 or 'default', not {part!r}")
        if value in found:
            raise ValueError(f"{part} given twice")
        found.append(value)
    return found


def workers_argument(text: str) -> list[int | None]:
    try:
        return parse_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def workers_supported(run_help: str) -> bool:
    """Whether ``onehop server run --help`` offers ``--workers``."""
    return re.search(r"--workers(?![\w-])", run_help) is not None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=128, help="MiB per client and round (default 128)")
    parser.add_argument("--clients", type=int, default=4,
                        help="tunnel client processes per server, one stream each (default 4)")
    parser.add_argument("--direction", choices=("upload", "download"), default="upload",
                        help="which way the bytes go, from the clients' side (default upload)")
    parser.add_argument("--workers", type=workers_argument, default=[1, None], metavar="LIST",
                        help="one onehop server per entry: a worker count (passed as `onehop server run "
                             "--workers N`) or 'default' (no option); default: 1,default")
    parser.add_argument("--protocol", choices=("OSSH", "SSH"), default="OSSH", help="onehop tunnel protocol")
    add_rounds_option(parser)
    add_pin_option(parser)
    parser.add_argument("--warmup-mib", type=int, default=8,
                        help="MiB per client sent once through every server before measuring (default 8; 0: none)")
    parser.add_argument("--client-runner", choices=("auto", "cli", "bench"), default="auto",
                        help="as in throughput.py")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs, configs)")
    args = parser.parse_args(argv)
    if args.mib < 1 or args.clients < 1:
        parser.error("--mib and --clients must be >= 1")
    return args


# -- the systems under test ----------------------------------------------------------------

def workers_label(workers: int | None) -> str:
    return "onehop (default workers)" if workers is None else f"onehop --workers {workers}"


@dataclass
class System:
    """One server and its client processes; ``workers`` is None for sshd's row."""

    key: str
    label: str
    server_pid: int
    client_pids: list[int]
    connectors: list[Connector]
    workers: int | None = None
    onehop: bool = True


@dataclass
class Sample:
    """One round of one system: wall seconds and CPU seconds spent during it."""

    wall: float
    server_cpu: float
    client_cpu: float
    server_processes: int
    busy_server_processes: int


@dataclass
class Summary:
    label: str
    mbps: Spread
    server_cpu_per_gib: Spread
    server_cpu_per_wall: Spread
    client_cpu_per_gib: Spread
    server_processes: int
    busy_server_processes: int
    samples: list[Sample] = field(default_factory=list)

    def fmt_processes(self) -> str:
        return f"{self.server_processes} ({self.busy_server_processes} busy)"

    def as_dict(self) -> dict:
        return {"label": self.label, "mbps": self.mbps.as_dict(),
                "server_cpu_s_per_gib": self.server_cpu_per_gib.as_dict(),
                "server_cpu_s_per_wall_s": self.server_cpu_per_wall.as_dict(),
                "clients_cpu_s_per_gib": self.client_cpu_per_gib.as_dict(),
                "server_processes": self.server_processes,
                "busy_server_processes": self.busy_server_processes,
                "samples": [vars(s) for s in self.samples]}


def summarize(label: str, samples: list[Sample], nbytes_per_round: int) -> Summary:
    return Summary(
        label=label,
        mbps=spread([mbps(nbytes_per_round, s.wall) for s in samples]),
        server_cpu_per_gib=spread([cpu_seconds_per_gib(s.server_cpu, nbytes_per_round) for s in samples]),
        server_cpu_per_wall=spread([cpu_per_wall(s.server_cpu, s.wall) for s in samples]),
        client_cpu_per_gib=spread([cpu_seconds_per_gib(s.client_cpu, nbytes_per_round) for s in samples]),
        server_processes=max(s.server_processes for s in samples),
        busy_server_processes=round(spread([s.busy_server_processes for s in samples]).median),
        samples=samples)


def onehop_run_argv(config: str, workers: int | None) -> list[str]:
    """``onehop server run``; ``--workers N`` only when a count was asked for."""
    argv = onehop_cli("server", "run", "--config", config)
    return argv if workers is None else [*argv, "--workers", str(workers)]


def start_onehop_server_with(procs: Processes, root: str, name: str, workers: int | None,
                             protocol: str) -> tuple[subprocess.Popen, str]:
    """``onehop server generate`` into ROOT/NAME and ``onehop server run`` (``--workers N``
    only when ``workers`` is a number); returns (the process, its server entry file)."""
    server_dir = os.path.join(root, name)
    ossh_port, ssh_port = free_port(ONEHOP_IP), free_port(ONEHOP_IP)
    gen = subprocess.run(onehop_cli("server", "generate", "--ip", ONEHOP_IP, "--ossh-port", str(ossh_port),
                                    "--ssh-port", str(ssh_port), "--allow-bogons", "--out", server_dir),
                         capture_output=True, text=True, timeout=120, check=False)
    if gen.returncode != 0:
        raise BenchError(f"onehop server generate failed: {gen.stderr.strip() or gen.stdout.strip()}")
    proc = procs.start(name, onehop_run_argv(os.path.join(server_dir, "server.json"), workers))
    port = ossh_port if protocol == "OSSH" else ssh_port
    wait_until(lambda: port_accepts(ONEHOP_IP, port), 30, f"{name} to listen",
               lambda: procs.check_alive(name, proc))
    return proc, os.path.join(server_dir, "server-entry.dat")


def start_sshd_system(procs: Processes, root: str, sink_port: int, clients: int) -> System:
    sshd = start_private_sshd(procs, root, ("-t", "ed25519"))
    ports, pids = [], []
    for i in range(clients):
        lport, ssh = start_ssh_forward(procs, f"ssh-{i + 1}", sshd, sink_port)
        ports.append(lport)
        pids.append(ssh.pid)
    return System("sshd", f"sshd ({clients} x ssh -L)", sshd.proc.pid, pids,
                  [direct("127.0.0.1", p) for p in ports], onehop=False)


def start_onehop_system(procs: Processes, root: str, sink_port: int, clients: int, workers: int | None,
                        protocol: str, runner: str) -> System:
    key = "onehop" if workers is None else f"onehop-w{workers}"
    server, entry = start_onehop_server_with(procs, root, f"{key}-server", workers, protocol)
    connectors, pids = [], []
    for i in range(clients):
        socks, client, runner = start_onehop_client(procs, root, f"{key}-client-{i + 1}", entry, protocol,
                                                    runner, ((f"{key}-server", server),))
        connectors.append(via_socks5(socks, SINK_HOST, sink_port))
        pids.append(client.pid)
    return System(key, workers_label(workers), server.pid, pids, connectors, workers=workers)


def measure(system: System, direction: str, nbytes: int, pin: Pinning | None) -> Sample:
    if pin:  # again before every round: catches processes and threads started since
        pin_tree(system.server_pid, pin.servers)
        for pid in system.client_pids:
            pin_tree(pid, pin.clients)
    server0 = tree_cpu_seconds(system.server_pid, include_reaped=True)
    by_process0 = process_cpu_seconds(system.server_pid)
    clients0 = sum(tree_cpu_seconds(p) for p in system.client_pids)
    wall = transfer_each(system.connectors, direction, nbytes)
    server1 = tree_cpu_seconds(system.server_pid, include_reaped=True)
    by_process1 = process_cpu_seconds(system.server_pid)
    clients1 = sum(tree_cpu_seconds(p) for p in system.client_pids)
    return Sample(wall, server1 - server0, clients1 - clients0, len(by_process1),
                  busy_processes(by_process0, by_process1))


# -- reporting -------------------------------------------------------------------------

def multicore_applies(workers: int | None, build_has_workers: bool) -> bool:
    """The "> 1.0 CPU-s per wall-s" target is for 2 workers: asked for, or the default of a
    build that has ``--workers`` (then the default is meant to use the cores; the busy
    process count shows whether it did). A build without it runs one process."""
    return (workers or 0) >= 2 or (workers is None and build_has_workers)


def headline_lines(summaries: dict[str, Summary], systems: list[System], build_has_workers: bool) -> list[str]:
    base = summaries.get("sshd")
    lines = []
    for system in systems:
        if not system.onehop:
            continue
        s = summaries[system.key]
        cpu_r = ratio(s.server_cpu_per_gib.median, base.server_cpu_per_gib.median if base else None)
        agg_r = ratio(s.mbps.median, base.mbps.median if base else None)
        parts = [(f"server CPU/GiB {fmt_ratio(cpu_r)} sshd (target <= {CPU_TARGET:.1f}x: "
                  f"{verdict(cpu_r, CPU_TARGET, 'lower')})")]
        if system.workers is None:
            parts.append(f"aggregate {fmt_ratio(agg_r)} sshd (target >= {AGGREGATE_TARGET:.1f}x with default "
                         f"workers: {verdict(agg_r, AGGREGATE_TARGET, 'higher')})")
        else:
            parts.append(f"aggregate {fmt_ratio(agg_r)} sshd")
        use = s.server_cpu_per_wall.median
        if multicore_applies(system.workers, build_has_workers):
            parts.append(f"{use:.2f} server CPU-s per wall-s, {s.busy_server_processes} busy processes "
                         f"(target > {MULTICORE_TARGET:.1f} with 2 workers: {verdict(use, MULTICORE_TARGET, 'above')})")
        else:
            parts.append(f"{use:.2f} server CPU-s per wall-s (one worker: the 2-worker target does not apply)")
        lines.append(f"loaded {s.label}: " + "; ".join(parts))
    return lines


def report(args, systems: list[System], summaries: dict[str, Summary], notes: list[str],
           build_has_workers: bool) -> list[str]:
    total = args.mib * args.clients
    print()
    print(f"Loaded server: {args.clients} concurrent {args.direction}s of {args.mib} MiB, one per tunnel client "
          f"process ({total} MiB per round), cipher {CIPHER}, onehop protocol {args.protocol}")
    print(f"Each figure: median [lowest-highest] of {args.rounds} interleaved rounds; CPU: user+sys of each "
          f"process tree (server: with reaped children; clients: all {args.clients} together); one clock tick = "
          f"{tick_per_gib(total << 20, os.sysconf('SC_CLK_TCK')):.3f} s/GiB at this size")
    print(f"Pinning: {args.pin.describe() if args.pin else 'none (--pin to pin)'}")
    cols = ("aggregate MB/s", "server CPU s/GiB", "server CPU-s/wall-s", "clients CPU s/GiB", "server processes")
    w0, w = 28, 24
    head = f"{'server':{w0}}" + "".join(f"{c:>{w}}" for c in cols)
    print()
    print(head)
    print("-" * len(head))
    for system in systems:
        s = summaries[system.key]
        print(f"{s.label:{w0}}{s.mbps.fmt(1):>{w}}{s.server_cpu_per_gib.fmt(2):>{w}}"
              f"{s.server_cpu_per_wall.fmt(2):>{w}}{s.client_cpu_per_gib.fmt(2):>{w}}{s.fmt_processes():>{w}}")
    print("  server processes: all in the server's tree (onehop's include its OSSH key workers); busy: those")
    print("  that each used at least 10 % of the tree's CPU in a round (median of the rounds)")
    base = summaries.get("sshd")
    if base:
        print()
        head = f"{'ratio to sshd (medians)':{w0}}" + "".join(f"{c:>{w}}" for c in cols[:4])
        print(head)
        print("-" * len(head))
        for system in systems:
            if not system.onehop:
                continue
            s = summaries[system.key]
            cells = [ratio(s.mbps.median, base.mbps.median),
                     ratio(s.server_cpu_per_gib.median, base.server_cpu_per_gib.median),
                     ratio(s.server_cpu_per_wall.median, base.server_cpu_per_wall.median),
                     ratio(s.client_cpu_per_gib.median, base.client_cpu_per_gib.median)]
            print(f"{s.label:{w0}}" + "".join(f"{fmt_ratio(c):>{w}}" for c in cells))
    if notes:
        print()
    for note in notes:
        print(note)
    print()
    lines = headline_lines(summaries, systems, build_has_workers)
    for line in lines:
        print(line)
    return lines


# -- the run ---------------------------------------------------------------------------

def onehop_run_help() -> str:
    done = subprocess.run(onehop_cli("server", "run", "--help"), capture_output=True, text=True, timeout=120,
                          check=False)
    return done.stdout + done.stderr


def choose_workers(requested: list[int | None], supported: bool) -> tuple[list[int | None], list[str]]:
    """The worker counts this build can run, and a note for each it cannot."""
    if supported:
        return list(requested), []
    kept = [w for w in requested if w is None]
    notes = [f"{workers_label(w)}: not supported by this build (`onehop server run --help` has no --workers)"
             for w in requested if w is not None]
    return kept, notes


def run(args, workers: list[int | None], notes: list[str], build_has_workers: bool) -> int:
    root = tempfile.mkdtemp(prefix="onehop-loaded-")
    procs = Processes(root)
    nbytes = args.mib << 20
    try:
        load = os.getloadavg()[0]
        print(f"setting up in {root} ... ({os.cpu_count()} CPUs, load average {load:.2f} before start"
              + ("; other processes are busy, expect noisy figures" if load > 0.5 else "") + ")", flush=True)
        sink_port = start_sink(procs)
        systems = [start_sshd_system(procs, root, sink_port, args.clients)]
        for w in workers:
            systems.append(start_onehop_system(procs, root, sink_port, args.clients, w, args.protocol,
                                               args.client_runner))
        for system in systems:
            print(f"  {system.label}: server pid {system.server_pid} "
                  f"({len(descendants(system.server_pid))} processes), client pids "
                  + " ".join(str(p) for p in system.client_pids), flush=True)
        if args.pin:
            print(f"  pinning {args.pin.describe()}", flush=True)
        if args.warmup_mib > 0:
            for system in systems:
                measure(system, args.direction, args.warmup_mib << 20, args.pin)
        samples: dict[str, list[Sample]] = {s.key: [] for s in systems}
        for rnd, system in interleaved(systems, args.rounds):
            sample = measure(system, args.direction, nbytes, args.pin)
            samples[system.key].append(sample)
            total = nbytes * len(system.connectors)
            print(f"  round {rnd + 1}  {system.label:26} {mbps(total, sample.wall):8.1f} MB/s ({sample.wall:.2f} s)  "
                  f"server {cpu_seconds_per_gib(sample.server_cpu, total):.2f} CPU s/GiB, "
                  f"{cpu_per_wall(sample.server_cpu, sample.wall):.2f} CPU-s/wall-s; clients "
                  f"{cpu_seconds_per_gib(sample.client_cpu, total):.2f} CPU s/GiB", flush=True)
        summaries = {s.key: summarize(s.label, samples[s.key], nbytes * len(s.connectors)) for s in systems}
        lines = report(args, systems, summaries, notes, build_has_workers)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"mib_per_client": args.mib, "clients": args.clients, "direction": args.direction,
                           "rounds": args.rounds, "cipher": CIPHER, "protocol": args.protocol,
                           "pin": ({"clients": sorted(args.pin.clients), "servers": sorted(args.pin.servers)}
                                   if args.pin else None),
                           "unit": "MB/s (1e6 bytes/s)", "notes": notes,
                           "systems": {k: s.as_dict() for k, s in summaries.items()},
                           "targets": {"server_cpu_per_gib_vs_sshd_max": CPU_TARGET,
                                       "aggregate_vs_sshd_min_default_workers": AGGREGATE_TARGET,
                                       "server_cpu_per_wall_min_2_workers": MULTICORE_TARGET},
                           "headline": lines}, f, indent=2)
        return 0
    finally:
        finish_run(procs, root, args.keep_temp)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = check_openssh()
    if missing:
        print(f"server_load_throughput: OpenSSH is needed ({missing} not found). Install it with:\n  {INSTALL}",
              file=sys.stderr)
        return 3
    build_has_workers = workers_supported(onehop_run_help())
    workers, notes = choose_workers(args.workers, build_has_workers)
    for note in notes:
        print(note, file=sys.stderr)
    if not workers:
        print("server_load_throughput: no onehop server left to run (add 'default' to --workers)",
              file=sys.stderr)
        return 3
    try:
        with signals_raise_keyboard_interrupt():
            return run(args, workers, notes, build_has_workers)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaned up", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"server_load_throughput: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
