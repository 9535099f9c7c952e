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
process (blocking sockets, 1 MiB calls, one thread per stream). The tests run
interleaved (every path in turn for each case) so drift on a shared machine hits
all of them alike. It prints MB/s (10^6 bytes per second), the ratios, and last the
headline figure: onehop one-stream download as a multiple of OpenSSH (target >= 0.60).

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

from _common import (  # noqa: E402
    SSHD, BenchError, NoticeReader, Processes, direct, free_port, onehop_cli, port_accepts,
    signals_raise_keyboard_interrupt, start_onehop_server, start_private_sshd, summarize_collapsed,
    transfer, tree_cpu_seconds, via_socks5, wait_until,
)
from _common import OPENSSH_INSTALL as INSTALL  # noqa: E402
import _psiphon  # noqa: E402

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
    port, user, client_key = sshd.port, sshd.user, sshd.client_key
    lport = free_port("127.0.0.1")
    ssh = procs.start("ssh", [
        "ssh", "-N", "-F", "/dev/null", "-L", f"{lport}:{SINK_HOST}:{sink_port}",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", f"Ciphers={CIPHER}", "-o", "Compression=no", "-o", "BatchMode=yes",
        "-o", "ExitOnForwardFailure=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
        "-i", client_key, "-p", str(port), f"{user}@127.0.0.1"])
    wait_until(lambda: port_accepts("127.0.0.1", lport), 20, "ssh -L to listen",
               lambda: (procs.check_alive("ssh", ssh), procs.check_alive("sshd", sshd.proc)))
    return lport, {"client": ssh.pid, "server": sshd.proc.pid}


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
        for proc, path in self._running:
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

def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


def run_all(args, connectors: dict, roles: dict, profiler: Profiler | None) -> tuple[dict, dict]:
    """Run every case; returns (MB/s samples, CPU seconds per GiB samples by role).

    A failed transfer on a Psiphon path is recorded in ``args.failures`` (that path then
    sits out the rest of the case) instead of ending the run; elsewhere it is fatal.
    """
    total = args.mib * 1024 * 1024
    samples: dict[str, dict[str, list[float]]] = {p: {} for p, _ in args.paths}
    cpu: dict[str, dict[str, dict[str, list[float]]]] = {p: {} for p in roles}
    if args.warmup_mib > 0:
        for path, _ in args.paths:
            transfer(connectors[path], "download", 1, args.warmup_mib * 1024 * 1024)
    for streams, direction in CASES:
        key = case_key(streams, direction)
        for rep in range(args.repeat):
            for path, label in args.paths:
                if (path, key) in args.failures:
                    continue
                profile = profiler is not None and path == "onehop" and streams == 1 and rep == 0
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
                                wait_until(lambda: reader.tunnels >= 1, 60, "the tunnel to come back")
                                why += "; the client re-established its tunnel"
                            except BenchError:
                                why += "; no tunnel again within 60 s"
                    args.failures[(path, key)] = why
                    print(f"  {case_label(streams, direction):18} {label:16}    FAILED  {why}", flush=True)
                    continue
                finally:
                    if profile:
                        for p in profiler.stop():
                            print(f"  profile written: {p}", flush=True)
                rate = mbps(total, seconds)
                samples[path].setdefault(key, []).append(rate)
                for r, pid in roles.get(path, {}).items():
                    used = tree_cpu_seconds(pid) - before[r]
                    cpu[path].setdefault(key, {}).setdefault(r, []).append(used / (args.mib / 1024))
                print(f"  {case_label(streams, direction):18} {label:16} {rate:9.1f} MB/s  "
                      f"({seconds:.2f} s)", flush=True)
    return samples, cpu


def fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


def report(args, samples: dict, cpu: dict, algs: dict) -> dict:
    paths = args.paths
    tunnels = [(p, label) for p, label in paths if p != "raw"]
    w = 18
    med = {p: {k: statistics.median(v) for k, v in cases.items()} for p, cases in samples.items()}
    per = args.mib / 8
    print()
    print(f"Throughput, MB/s (10^6 bytes/s), {args.mib} MiB per test (8 streams: {per:g} MiB each), "
          f"onehop protocol {args.protocol}, OpenSSH and onehop>onehop cipher {CIPHER}"
          + (f", median of {args.repeat}" if args.repeat > 1 else ""))
    head = f"{'test':20}" + "".join(f"{label:>{w}}" for _, label in paths)
    print(head)
    print("-" * len(head))
    for streams, direction in CASES:
        key = case_key(streams, direction)
        cells = []
        for p, _ in paths:
            n = len(samples[p].get(key, []))
            cells.append(f"{'failed':>{w}}" if not n else
                         f"{med[p][key]:{w - 1}.1f}*" if n < args.repeat else f"{med[p][key]:{w}.1f}")
        print(f"{case_label(streams, direction):20}" + "".join(cells))
    if any(0 < len(samples[p].get(k, [])) < args.repeat for p, _ in paths for k in samples[p]):
        print(f"  * median of fewer than {args.repeat} runs: the others failed (listed below)")
    print()
    ratios: dict[str, dict[str, float]] = {}
    for title, base, cols in (("ratio to raw loopback", "raw", tunnels),
                              ("ratio to OpenSSH -L", "openssh", [t for t in tunnels if t[0] != "openssh"])):
        head = f"{title:20}" + "".join(f"{label:>{w}}" for _, label in cols)
        print(head)
        print("-" * len(head))
        for streams, direction in CASES:
            key = case_key(streams, direction)
            b = med[base].get(key)
            for p, _ in cols:
                if key in med[p] and b:
                    ratios.setdefault(key, {})[f"{p}/{base}"] = med[p][key] / b
            print(f"{case_label(streams, direction):20}"
                  + "".join(f"{fmt_ratio(med[p].get(key), b):>{w}}" for p, _ in cols))
        print()
    cpu_med = {p: {k: {r: statistics.median(v) for r, v in roles.items()} for k, roles in cases.items()}
               for p, cases in cpu.items()}
    print("CPU seconds per GiB moved, client / server (user+sys of each process tree; lower is better)")
    head = f"{'test':20}" + "".join(f"{label:>{w}}" for _, label in tunnels)
    print(head)
    print("-" * len(head))
    for streams, direction in CASES:
        key = case_key(streams, direction)
        cells = []
        for p, _ in tunnels:
            c = cpu_med[p].get(key)
            cells.append(f"{c['client']:.2f} / {c['server']:.2f}" if c else "n/a")
        print(f"{case_label(streams, direction):20}" + "".join(f"{c:>{w}}" for c in cells))
    print("  clients: ssh, onehop client" + (", psiphon-tunnel-core" if algs else "")
          + "; servers: sshd (and children), onehop server run" + (", psiphond" if algs else ""))
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
        legacy[key] = {"onehop/openssh": r["onehop/openssh"], "onehop/raw": r["onehop/raw"],
                       "openssh/raw": r["openssh/raw"], **r}
    return {"mbps": med, "samples": samples, "ratios": legacy, "cpu_seconds_per_gib": cpu_med,
            "psiphon_algorithms": algs, "failures": {f"{p} {k}": why for (p, k), why in args.failures.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", "--size-mib", dest="mib", type=int, default=512,
                        help="MiB moved per test (default 512; 64 for a quick run)")
    parser.add_argument("--protocol", default="OSSH", choices=("OSSH", "OSSH-PREFIX", "SSH"),
                        help="onehop tunnel protocol (default OSSH)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per test; the median is reported")
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
    if args.mib < 8 or args.repeat < 1:
        parser.error("--mib must be >= 8 and --repeat >= 1")

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
                ports, psiphon_roles, algs, args.notices = start_psiphon_paths(procs, root, onehop_server, pids["runner"],
                                                                 args.psiphon_cipher, args.psiphon_redraws)
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
                               "paths": [p for p, _ in args.paths],
                               "repeat": args.repeat, "unit": "MB/s (1e6 bytes/s)", **result,
                               "headline": {"onehop_1stream_download_vs_openssh": headline,
                                            "target": TARGET}}, f, indent=2)
            print(f"onehop 1-stream download = {headline:.2f}x OpenSSH (target >= {TARGET:.2f})")
            status = 0
        except KeyboardInterrupt:
            print("\ninterrupted; cleaning up", file=sys.stderr)
            status = 130
        except BenchError as exc:
            print(f"throughput: {exc}", file=sys.stderr)
            status = 1
        finally:
            procs.stop_all()
            if args.keep_temp:
                print(f"kept {root}", file=sys.stderr)
            else:
                shutil.rmtree(root, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
