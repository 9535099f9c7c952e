#!/usr/bin/env python3
"""Tunnel throughput: onehop's SOCKS proxy beside raw loopback, OpenSSH ``ssh -L`` and Psiphon.

One run starts, all on loopback:

* a sink (its own process, see ``_common.py``), the destination of every transfer;
* a private OpenSSH server (own temp dir, host key, client key and sshd_config,
  aes128-gcm@openssh.com only) and ``ssh -N -L`` forwarding a local port to the sink;
* a onehop server on 127.0.0.2 (``onehop server run``, AllowBogons) and a onehop client
  (a separate process) with its SOCKS proxy, tunnelling to the sink;

and, unless ``--no-psiphon`` (or Psiphon's binaries are absent, see ``_psiphon.py``),
the same tunnel with Psiphon's own programs on either end, all OSSH:

* ``Psiphon>psiphond``: psiphond (127.0.0.1, AllowBogons) and Psiphon's client
  (psiphon-tunnel-core) with its SOCKS proxy;
* ``Psiphon>onehop``: Psiphon's client to the same ``onehop server run``;
* ``onehop>psiphond``: a second onehop client to the same psiphond;

then moves the same byte count (default 512 MiB) through each path: one stream and
eight (which split the total), download and upload. The load generator is this
process (blocking sockets, 1 MiB calls, one thread per stream). The tests run in
interleaved rounds (each round runs every path once per case; ``--rounds``, at least 3)
so drift on a shared machine hits all of them alike. It prints MB/s (10^6 bytes per
second) beside the client's and the server's CPU seconds per GiB, each the median
[lowest-highest] of the rounds, the ratios, and last the headlines: onehop's one-stream
CPU per GiB over ssh's and sshd's (target <= 1.2x each) and its one-stream download as a
multiple of OpenSSH (target >= 0.60). ``--pin`` pins clients and servers to CPUs
(``_pinning.py``).

OSSH obfuscation stops after NEWKEYS, so bulk data through onehop pays only SSH's
own cipher (aes128-gcm here as in OpenSSH), plus Python's per-packet overhead.
Psiphon's client draws a random KEX, cipher and MAC for every tunnel; the benchmark
reads the draw off the handshake (``_psiphon.HandshakeSniffer``) and prints it under
the table. ``--psiphon-cipher NAME`` restarts Psiphon's client until it draws NAME.

Psiphon's port forwards do not pass a half-close. The framing does not need one: every
transfer is length-prefixed (``_common.py``: the downloader reads exactly n bytes, an
upload ends with the sink's one-byte acknowledgement), nothing waits for EOF.

    python bench/throughput.py                 # 512 MiB per test, OSSH
    python bench/throughput.py --size-mib 64   # quick
    python bench/throughput.py --mib 64 --protocol SSH --json out.json --no-psiphon
    python bench/throughput.py --mib 128 --profile prof/   # py-spy on the onehop processes
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    SSHD, BenchError, NoticeReader, Processes, direct, finish_run, free_port, onehop_cli, port_accepts,
    signals_raise_keyboard_interrupt, start_onehop_server, start_private_sshd, summarize_collapsed,
    transfer, tree_cpu_seconds, via_socks5, wait_until,
)
from _common import OPENSSH_INSTALL as INSTALL
import _psiphon
from _pinning import Pinning, add_pin_option, pin_tree
from _stats import (
    add_rounds_option, cpu_seconds_per_gib, fmt_ratio, interleaved, mbps, ratio, spread, tick_per_gib, verdict,
)

COMMON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_common.py")
CIPHER = "aes128-gcm@openssh.com"
ONEHOP_IP = "127.0.0.2"
SINK_HOST = "127.0.0.1"

BASE_PATHS = (("raw", "raw loopback"), ("openssh", "OpenSSH -L"), ("onehop", "onehop SOCKS"))
PSIPHON_PATHS = (("psiphon-psiphond", "Psiphon>psiphond"), ("psiphon-onehop", "Psiphon>onehop"),
                 ("onehop-psiphond", "onehop>psiphond"))
PSIPHON_KEYS = {p for p, _ in PSIPHON_PATHS}
CASES = ((1, "download"), (1, "upload"), (8, "download"), (8, "upload"))
TARGET = 0.60
CPU_TARGET = 1.20  # one stream: onehop server and client CPU s/GiB over sshd's and ssh's


def case_key(streams: int, direction: str) -> str:
    return f"{streams}-stream-{direction}"


def case_label(streams: int, direction: str) -> str:
    return f"{streams} stream{'s' if streams > 1 else ''} {direction}"


# -- setup -----------------------------------------------------------------------------

def check_openssh() -> str | None:
    missing = [p for p, ok in ((SSHD, os.access(SSHD, os.X_OK)),
                               ("ssh", shutil.which("ssh")), ("ssh-keygen", shutil.which("ssh-keygen")))
               if not ok]
    return ", ".join(missing) if missing else None


def start_sink(procs: Processes) -> int:
    proc = procs.start("sink", [sys.executable, COMMON, "sink", "--host", SINK_HOST, "--port", "0"],
                       stdout_pipe=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().split()
    if len(line) != 2 or line[0] != "READY":
        procs.check_alive("sink", proc)
        raise BenchError(f"the sink did not start: {line!r}")
    return int(line[1])


def start_openssh(procs: Processes, root: str, sink_port: int) -> tuple[int, dict[str, int]]:
    """A private sshd and ``ssh -N -L``; returns (the local forwarded port, pids)."""
    sshd = start_private_sshd(procs, root, ("-t", "ed25519"))
    lport, ssh = start_ssh_forward(procs, "ssh", sshd, sink_port)
    return lport, {"client": ssh.pid, "server": sshd.proc.pid}


def start_ssh_forward(procs: Processes, name: str, sshd, sink_port: int) -> tuple[int, object]:
    """``ssh -N -L`` (its own session) through ``sshd`` to the sink; returns (the local
    forwarded port, the ssh process) once that port accepts."""
    lport = free_port("127.0.0.1")
    ssh = procs.start(name, [
        "ssh", "-N", "-F", "/dev/null", "-L", f"{lport}:{SINK_HOST}:{sink_port}",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", f"Ciphers={CIPHER}", "-o", "Compression=no", "-o", "BatchMode=yes",
        "-o", "ExitOnForwardFailure=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
        "-i", sshd.client_key, "-p", str(sshd.port), f"{sshd.user}@127.0.0.1"])
    wait_until(lambda: port_accepts("127.0.0.1", lport), 20, f"{name} (ssh -L) to listen",
               lambda: (procs.check_alive(name, ssh), procs.check_alive("sshd", sshd.proc)))
    return lport, ssh


def start_onehop_client(procs: Processes, root: str, name: str, entry: str, protocol: str,
                        runner: str, servers: tuple = ()) -> tuple[int, object, str]:
    """A onehop client process to the one server in ``entry``; waits for its tunnel and
    returns (SOCKS port, process, runner). ``servers``: (name, process) to watch too."""
    socks_port, http_port = free_port(), free_port()
    data_dir = os.path.join(root, name)
    if runner == "auto":
        runner = "cli" if importlib.util.find_spec("onehop.client.app") else "bench"
    if runner == "cli":
        argv = onehop_cli("client", "--target-server-entry", "@" + entry, "--socks-port", str(socks_port),
                          "--http-port", str(http_port), "--data-dir", data_dir, "--notices",
                          "--protocol", protocol)
    else:
        argv = [sys.executable, COMMON, "onehop-client", "--entry", entry, "--socks-port", str(socks_port),
                "--http-port", str(http_port), "--data-dir", data_dir, "--protocol", protocol]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    client = procs.start(name, argv, stdout_pipe=True, env=env)
    notices = NoticeReader(client.stdout, copy_to=os.path.join(procs.log_dir, f"{name}-notices.log"))

    def alive() -> None:
        for pname, proc in ((name, client), *servers):
            if proc.poll() is not None:
                raise BenchError(f"{pname} exited with status {proc.returncode}:\n{procs.log_tail(pname)}\n"
                                 f"  last notices:\n{notices.last()}")
    try:
        wait_until(lambda: notices.tunnels >= 1, 60, f"{name}'s tunnel (Tunnels count 1)", alive)
    except BenchError as exc:
        raise BenchError(f"{exc}\n  last notices:\n{notices.last()}") from None
    client.notice_reader = notices  # type: ignore[attr-defined]
    return notices.socks_port or socks_port, client, runner


def start_onehop(procs: Processes, root: str, protocol: str, runner: str) -> tuple[int, dict, object]:
    """A onehop server and client (separate processes); returns (SOCKS port, pids, server)."""
    started = start_onehop_server(procs, root, ONEHOP_IP, "ssh")
    socks_port, client, runner = start_onehop_client(procs, root, "onehop-client", started.entry_file,
                                                     protocol, runner, (("onehop-server", started.proc),))
    return socks_port, {"client": client.pid, "server": started.proc.pid, "runner": runner}, started


def start_psiphon_paths(procs: Processes, root: str, onehop_server, runner: str, want_cipher: str | None,
                        redraws: int) -> tuple[dict, dict, dict, dict]:
    """psiphond, Psiphon's client to psiphond and to the onehop server, a onehop client to
    psiphond (all OSSH). Returns (SOCKS port, CPU roles, algorithms, notices) by path."""
    psiphond = _psiphon.start_psiphond(procs, root)
    ports, roles, algs, readers = {}, {}, {}, {}
    for path, entry, port, server_pid in (
            ("psiphon-psiphond", psiphond.entry_file, psiphond.port, psiphond.proc.pid),
            ("psiphon-onehop", onehop_server.entry_file, onehop_server.ossh_port, onehop_server.proc.pid)):
        for attempt in range(1 + (redraws if want_cipher else 0)):
            sniffer = _psiphon.HandshakeSniffer(port)
            socks, proc, notices = _psiphon.start_psiphon_client(procs, root, f"{path}-{attempt}", entry)
            drawn = _psiphon.describe(sniffer, entry)
            if not want_cipher or (isinstance(drawn, dict) and drawn["cipher"] == want_cipher):
                break
            print(f"  {path}: drew {_psiphon.fmt_algs(drawn)}; redrawing for {want_cipher}", flush=True)
            proc.terminate()
            proc.wait(10)
        else:
            raise BenchError(f"Psiphon's client did not draw {want_cipher} in {1 + redraws} tunnels "
                             f"to {path.split('-')[1]}")
        ports[path], roles[path], algs[path] = socks, {"client": proc.pid, "server": server_pid}, drawn
        readers[path] = notices
    sniffer = _psiphon.HandshakeSniffer(psiphond.port)
    socks, client, _ = start_onehop_client(procs, root, "onehop-client-psiphond", psiphond.entry_file,
                                           "OSSH", runner, (("psiphond", psiphond.proc),))
    algs["onehop-psiphond"] = _psiphon.describe(sniffer, psiphond.entry_file)
    ports["onehop-psiphond"] = socks
    roles["onehop-psiphond"] = {"client": client.pid, "server": psiphond.proc.pid}
    readers["onehop-psiphond"] = client.notice_reader  # type: ignore[attr-defined]
    return ports, roles, algs, readers


# -- profiling -------------------------------------------------------------------------

class Profiler:
    """py-spy record on the onehop client and server while one test runs."""

    def __init__(self, out_dir: str, pids: dict[str, int], rate: int) -> None:
        self.out_dir = out_dir
        self.pids = pids
        self.rate = rate
        self.py_spy = shutil.which("py-spy")
        if self.py_spy is None:
            raise BenchError("--profile needs py-spy: pip install py-spy")
        os.makedirs(out_dir, exist_ok=True)
        self._running: list[tuple[subprocess.Popen, str]] = []

    def start(self, label: str) -> None:
        for role in ("client", "server"):
            path = os.path.join(self.out_dir, f"{role}-{label}.txt")
            proc = subprocess.Popen([self.py_spy, "record", "--pid", str(self.pids[role]), "--format", "raw",
                                     "--rate", str(self.rate), "--nonblocking", "-o", path],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            self._running.append((proc, path))
        time.sleep(1.0)  # let py-spy attach before the clock starts

    def stop(self) -> list[str]:
        paths = []
        for proc, _path in self._running:
            proc.send_signal(signal.SIGINT)
        for proc, path in self._running:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            paths.append(path)
        self._running.clear()
        return paths


# -- running and reporting ---------------------------------------------------------------

def pin_roles(pinning: Pinning, pids: dict[str, int]) -> None:
    """A path's client tree onto the client CPUs and its server tree onto the server CPUs."""
    for role, pid in pids.items():
        pin_tree(pid, pinning.clients if role == "client" else pinning.servers)


def run_all(args, connectors: dict, roles: dict, profiler: Profiler | None) -> tuple[dict, dict]:
    """Run every case in interleaved rounds; returns (MB/s samples, CPU seconds per GiB
    samples by role).

    A failed transfer on a Psiphon path is recorded in ``args.failures`` (that path then
    sits out the rest of the case) instead of ending the run; elsewhere it is fatal.
    """
    total = args.mib * 1024 * 1024
    samples: dict[str, dict[str, list[float]]] = {p: {} for p, _ in args.paths}
    cpu: dict[str, dict[str, dict[str, list[float]]]] = {p: {} for p in roles}
    if args.pin:
        for path, _ in args.paths:
            pin_roles(args.pin, roles.get(path, {}))
    if args.warmup_mib > 0:
        for path, _ in args.paths:
            transfer(connectors[path], "download", 1, args.warmup_mib * 1024 * 1024)
    for streams, direction in CASES:
        key = case_key(streams, direction)
        for rnd, (path, label) in interleaved(args.paths, args.rounds):
            if (path, key) in args.failures:
                continue
            if args.pin:  # again: catches any process or thread started since
                pin_roles(args.pin, roles.get(path, {}))
            profile = profiler is not None and path == "onehop" and streams == 1 and rnd == 0
            if profile:
                profiler.start(key)
            before = {r: tree_cpu_seconds(pid) for r, pid in roles.get(path, {}).items()}
            started = time.perf_counter()
            reader = args.notices.get(path)
            mark = len(reader.notices) if reader else 0
            try:
                seconds = transfer(connectors[path], direction, streams, total)
            except BenchError as exc:
                if path not in PSIPHON_KEYS:
                    raise
                why = f"{exc} (after {time.perf_counter() - started:.0f} s)"
                if reader is not None:
                    time.sleep(1.0)  # let the client's notices about it arrive
                    seen = [json.dumps({"noticeType": x.get("noticeType"), "data": x.get("data")})[:200]
                            for x in reader.since(mark)[:6]]
                    if seen:
                        why += "; client notices since the start of the transfer: " + " ".join(seen)
                    if reader.tunnels < 1:
                        try:
                            wait_until(lambda reader=reader: reader.tunnels >= 1, 60, "the tunnel to come back")
                            why += "; the client re-established its tunnel"
                        except BenchError:
                            why += "; no tunnel again within 60 s"
                args.failures[(path, key)] = why
                print(f"  round {rnd + 1}  {case_label(streams, direction):18} {label:16}    FAILED  {why}", flush=True)
                continue
            finally:
                if profile:
                    for p in profiler.stop():
                        print(f"  profile written: {p}", flush=True)
            rate = mbps(total, seconds)
            samples[path].setdefault(key, []).append(rate)
            used = {}
            for r, pid in roles.get(path, {}).items():
                used[r] = cpu_seconds_per_gib(tree_cpu_seconds(pid) - before[r], total)
                cpu[path].setdefault(key, {}).setdefault(r, []).append(used[r])
            cost = (f"  CPU s/GiB client {used['client']:.2f} server {used['server']:.2f}"
                    if used else "")
            print(f"  round {rnd + 1}  {case_label(streams, direction):18} {label:16} {rate:9.1f} MB/s  "
                  f"({seconds:.2f} s){cost}", flush=True)
    return samples, cpu


def fmt_cpu(spreads: dict | None, role: str) -> str:
    return spreads[role].fmt(2) if spreads and role in spreads else "-"


def cpu_ratios(cpu_med: dict, key: str, path: str) -> dict[str, float | None]:
    """A path's client and server CPU seconds per GiB over ssh's and sshd's in one case."""
    mine, base = cpu_med.get(path, {}).get(key, {}), cpu_med.get("openssh", {}).get(key, {})
    return {role: ratio(mine.get(role), base.get(role)) for role in ("client", "server")}


def headlines(ratios: dict, cpu_med: dict) -> list[str]:
    """The issue's one-stream targets, last lines of the output (the MB/s one last)."""
    lines = []
    for direction in ("download", "upload"):
        r = cpu_ratios(cpu_med, case_key(1, direction), "onehop")
        parts = [f"{role} {fmt_ratio(r[role])} {base} ({verdict(r[role], CPU_TARGET, 'lower')})"
                 for role, base in (("server", "sshd"), ("client", "ssh"))]
        lines.append(f"onehop 1-stream {direction} CPU s/GiB: " + ", ".join(parts)
                     + f" (target each <= {CPU_TARGET:.2f}x)")
    headline = ratios.get("1-stream-download", {}).get("onehop/openssh")
    lines.append(f"onehop 1-stream download = {fmt_ratio(headline)} OpenSSH (target >= {TARGET:.2f})")
    return lines


def report(args, samples: dict, cpu: dict, algs: dict) -> dict:
    paths = args.paths
    tunnels = [(p, label) for p, label in paths if p != "raw"]
    w = 18
    med = {p: {k: statistics.median(v) for k, v in cases.items()} for p, cases in samples.items()}
    spreads = {p: {k: spread(v) for k, v in cases.items()} for p, cases in samples.items()}
    cpu_spreads = {p: {k: {r: spread(v) for r, v in roles.items()} for k, roles in cases.items()}
                   for p, cases in cpu.items()}
    cpu_med = {p: {k: {r: sp.median for r, sp in roles.items()} for k, roles in cases.items()}
               for p, cases in cpu_spreads.items()}
    per = args.mib / 8
    print()
    print(f"Throughput, MB/s (10^6 bytes/s), {args.mib} MiB per test (8 streams: {per:g} MiB each), "
          f"onehop protocol {args.protocol}, OpenSSH and onehop>onehop cipher {CIPHER}")
    print(f"Each figure: median [lowest-highest] of {args.rounds} interleaved rounds. CPU seconds per GiB: "
          f"user+sys of each process tree (client: ssh, onehop client"
          + (", psiphon-tunnel-core" if algs else "") + "; server: sshd and its children, onehop server run"
          + (", psiphond" if algs else "") + "); lower is better, steadier than MB/s; one clock tick = "
          f"{tick_per_gib(args.mib << 20, os.sysconf('SC_CLK_TCK')):.2f} s/GiB at this size.")
    print(f"Pinning: {args.pin.describe() if args.pin else 'none (--pin to pin)'}")
    cw = 24
    for streams, direction in CASES:
        key = case_key(streams, direction)
        print()
        head = f"{case_label(streams, direction):20}{'MB/s':>{cw}}{'client CPU s/GiB':>{cw}}{'server CPU s/GiB':>{cw}}"
        print(head)
        print("-" * len(head))
        for p, label in paths:
            sp = spreads[p].get(key)
            if sp is None:
                print(f"  {label:18}{'failed':>{cw}}")
                continue
            c = cpu_spreads.get(p, {}).get(key)
            short = f" ({sp.n} of {args.rounds} rounds)" if sp.n < args.rounds else ""
            print(f"  {label:18}{sp.fmt(1):>{cw}}{fmt_cpu(c, 'client'):>{cw}}{fmt_cpu(c, 'server'):>{cw}}{short}")
    if any(sp.n < args.rounds for cases in spreads.values() for sp in cases.values()):
        print(f"  (n of {args.rounds} rounds): the other rounds failed (listed below)")
    print()
    ratios: dict[str, dict[str, float]] = {}
    for title, base, cols in (("ratio to raw loopback", "raw", tunnels),
                              ("ratio to OpenSSH -L", "openssh", [t for t in tunnels if t[0] != "openssh"])):
        head = f"{title:20}" + "".join(f"{label:>{w}}" for _, label in cols)
        print(head + "   (MB/s, of the medians)")
        print("-" * len(head))
        for streams, direction in CASES:
            key = case_key(streams, direction)
            b = med[base].get(key)
            for p, _ in cols:
                r = ratio(med[p].get(key), b)
                if r is not None:
                    ratios.setdefault(key, {})[f"{p}/{base}"] = r
            print(f"{case_label(streams, direction):20}"
                  + "".join(f"{fmt_ratio(ratio(med[p].get(key), b)):>{w}}" for p, _ in cols))
        print()
    cols = [t for t in tunnels if t[0] != "openssh"]
    head = f"{'CPU s/GiB to OpenSSH':20}" + "".join(f"{label:>{w}}" for _, label in cols)
    print(head + "   (client / server, over ssh / sshd)")
    print("-" * len(head))
    cpu_ratio_out: dict[str, dict[str, dict]] = {}
    for streams, direction in CASES:
        key = case_key(streams, direction)
        cells = []
        for p, _ in cols:
            r = cpu_ratios(cpu_med, key, p)
            cpu_ratio_out.setdefault(key, {})[p] = r
            cells.append(f"{fmt_ratio(r['client'])} / {fmt_ratio(r['server'])}")
        print(f"{case_label(streams, direction):20}" + "".join(f"{c:>{w}}" for c in cells))
    if algs:
        print()
        print("Psiphon columns (all OSSH, through each client's SOCKS proxy; A>B = A's client, B's server):")
        print("  negotiated SSH algorithms, read off this run's handshakes (Psiphon's client draws a random")
        print("  KEX, cipher and MAC for every tunnel, so its columns vary with the draw; onehop's client")
        print("  prefers aes128-gcm@openssh.com; --psiphon-cipher NAME redraws until Psiphon's gets NAME):")
        for p, label in tunnels:
            if p in algs:
                print(f"  {label:17} {_psiphon.fmt_algs(algs[p])}")
    if args.failures:
        print()
        print("Failed transfers (that path sat out the rest of the case):")
        for (p, key), why in args.failures.items():
            print(f"  {dict(paths)[p]}, {key}: {why}")
    if not algs and args.psiphon_note:
        print()
        print(args.psiphon_note)
    print()
    legacy = {}  # the keys of earlier JSON output
    for key, r in ratios.items():
        legacy[key] = {"onehop/openssh": r.get("onehop/openssh"), "onehop/raw": r.get("onehop/raw"),
                       "openssh/raw": r.get("openssh/raw"), **r}
    return {"mbps": med, "samples": samples, "ratios": legacy, "cpu_seconds_per_gib": cpu_med,
            "spread": {p: {k: sp.as_dict() for k, sp in cases.items()} for p, cases in spreads.items()},
            "cpu_spread": {p: {k: {r: sp.as_dict() for r, sp in roles.items()} for k, roles in cases.items()}
                           for p, cases in cpu_spreads.items()},
            "cpu_ratios_to_openssh": cpu_ratio_out,
            "psiphon_algorithms": algs, "failures": {f"{p} {k}": why for (p, k), why in args.failures.items()}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", "--size-mib", dest="mib", type=int, default=512,
                        help="MiB moved per test (default 512; 64 for a quick run)")
    parser.add_argument("--protocol", default="OSSH", choices=("OSSH", "OSSH-PREFIX", "SSH"),
                        help="onehop tunnel protocol (default OSSH)")
    add_rounds_option(parser)
    add_pin_option(parser)
    parser.add_argument("--warmup-mib", type=int, default=16,
                        help="MiB sent once through each path before measuring (default 16; 0: none)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy the onehop client and server during the 1-stream onehop tests "
                             "(collapsed stacks in DIR; perturbs those figures)")
    parser.add_argument("--profile-rate", type=int, default=200, help="py-spy samples/s (default 200)")
    parser.add_argument("--client-runner", choices=("auto", "cli", "bench"), default="auto",
                        help="start the client with `onehop client` (cli) or bench/_common.py (bench); "
                             "auto: cli when onehop.client.app exists")
    parser.add_argument("--no-psiphon", action="store_true",
                        help="skip the Psiphon columns (psiphond and Psiphon's client)")
    parser.add_argument("--psiphon-cipher", metavar="NAME",
                        help="restart Psiphon's client until its tunnel negotiates this cipher "
                             "(e.g. aes128-gcm@openssh.com); default: keep its random draw")
    parser.add_argument("--psiphon-redraws", type=int, default=30,
                        help="at most this many restarts for --psiphon-cipher (default 30)")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs, configs)")
    args = parser.parse_args(argv)
    if args.mib < 8:
        parser.error("--mib must be >= 8")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = check_openssh()
    if missing:
        print(f"throughput: OpenSSH is needed for the comparison ({missing} not found). Install it with:\n"
              f"  {INSTALL}", file=sys.stderr)
        return 3

    args.paths = BASE_PATHS
    args.failures = {}
    args.notices = {}
    args.psiphon_note = ""
    if args.no_psiphon:
        args.psiphon_note = "Psiphon columns skipped (--no-psiphon)."
    elif _psiphon.missing_binaries():
        args.psiphon_note = (f"Psiphon columns skipped: Psiphon's binaries are not at {_psiphon.PSIPHON_DIR} "
                             f"(missing: {', '.join(_psiphon.missing_binaries())}; set ONEHOP_PSIPHON_DIR to "
                             f"their directory).")
        print(f"throughput: {args.psiphon_note}", file=sys.stderr)
    else:
        args.paths = BASE_PATHS + PSIPHON_PATHS

    root = tempfile.mkdtemp(prefix="onehop-bench-")
    procs = Processes(root)
    status = 1
    with signals_raise_keyboard_interrupt():
        try:
            load = os.getloadavg()[0]
            print(f"setting up in {root} ... ({os.cpu_count()} CPUs, load average {load:.2f} before start"
                  + ("; other processes are busy, expect noisy figures" if load > 0.5 else "") + ")",
                  flush=True)
            sink_port = start_sink(procs)
            lport, ssh_pids = start_openssh(procs, root, sink_port)
            socks_port, pids, onehop_server = start_onehop(procs, root, args.protocol, args.client_runner)
            print(f"  sink 127.0.0.1:{sink_port}; ssh -L 127.0.0.1:{lport}; onehop SOCKS 127.0.0.1:{socks_port} "
                  f"({args.protocol} to {ONEHOP_IP}; client pid {pids['client']} via {pids['runner']}, "
                  f"server pid {pids['server']}); load generator pid {os.getpid()}", flush=True)
            connectors = {"raw": direct(SINK_HOST, sink_port), "openssh": direct("127.0.0.1", lport),
                          "onehop": via_socks5(socks_port, SINK_HOST, sink_port)}
            profiler = Profiler(args.profile, pids, args.profile_rate) if args.profile else None
            roles = {"openssh": ssh_pids, "onehop": {"client": pids["client"], "server": pids["server"]}}
            algs: dict = {}
            if len(args.paths) > len(BASE_PATHS):
                ports, psiphon_roles, algs, args.notices = start_psiphon_paths(
                    procs, root, onehop_server, pids["runner"], args.psiphon_cipher, args.psiphon_redraws)
                roles.update(psiphon_roles)
                for path, label in PSIPHON_PATHS:
                    connectors[path] = via_socks5(ports[path], SINK_HOST, sink_port)
                    print(f"  {label}: SOCKS 127.0.0.1:{ports[path]}, client pid {roles[path]['client']}, "
                          f"server pid {roles[path]['server']}; {_psiphon.fmt_algs(algs[path])}", flush=True)
            samples, cpu = run_all(args, connectors, roles, profiler)
            result = report(args, samples, cpu, algs)
            if profiler is not None:
                for name in sorted(os.listdir(args.profile)):
                    if name.endswith(".txt"):
                        print(f"profile {name}:")
                        print(summarize_collapsed(os.path.join(args.profile, name)))
                print()
            headline = result["ratios"]["1-stream-download"]["onehop/openssh"]
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"mib": args.mib, "protocol": args.protocol, "cipher": CIPHER,
                               "paths": [p for p, _ in args.paths], "rounds": args.rounds,
                               "pin": ({"clients": sorted(args.pin.clients), "servers": sorted(args.pin.servers)}
                                       if args.pin else None),
                               "unit": "MB/s (1e6 bytes/s)", **result,
                               "headline": {"onehop_1stream_download_vs_openssh": headline,
                                            "target": TARGET, "cpu_target": CPU_TARGET}}, f, indent=2)
            for line in headlines(result["ratios"], result["cpu_seconds_per_gib"]):
                print(line)
            status = 0
        except KeyboardInterrupt:
            print("\ninterrupted; cleaning up", file=sys.stderr)
            status = 130
        except BenchError as exc:
            print(f"throughput: {exc}", file=sys.stderr)
            status = 1
        finally:
            finish_run(procs, root, args.keep_temp)
    return status


if __name__ == "__main__":
    sys.exit(main())
