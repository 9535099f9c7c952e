#!/usr/bin/env python3
"""Server load: memory per idle tunnel and accepted handshakes per second, onehop beside
OpenSSH's sshd in the same run.

One run starts, all on loopback:

* a onehop server (``onehop server run``, its own process) on 127.0.0.2;
* a private OpenSSH server (``/usr/sbin/sshd -D -e -f CONFIG``: own host key, RSA 2048 as
  Psiphon servers use, own config with MaxStartups raised, a client key made for the run);

and, for each, a load generator process (``tests/server/loadgen.py``) that opens N
tunnels with at most C handshakes in flight and holds them: OSSH + SSH + password login
+ the API handshake for onehop (a real idle Psiphon tunnel), SSH + public-key login for
sshd. Same SSH algorithms on both (curve25519, aes128-gcm, rsa-sha2 host key).

It reports, per server: the accept rate (N / time to establish all N), the server's CPU
seconds per handshake (steadier than the rate on a shared machine, and independent of
the load generator, which is Python too and shares the two cores), and memory per idle
tunnel (RSS and PSS growth of the server's processes while the N tunnels are held,
divided by N; sshd runs one process per connection, so its PSS counts shared pages once).
The last line is the headline against the targets: <= 100 KiB RSS per idle onehop tunnel,
an accept rate >= 0.5x sshd's, all N tunnels held.

    python bench/server_load.py                       # 1000 tunnels each
    python bench/server_load.py --tunnels 300 --json out.json
    python bench/server_load.py --profile prof/       # py-spy the onehop server while accepting
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _common import (
    SSHD, BenchError, Processes, descendants, finish_run, signals_raise_keyboard_interrupt, start_onehop_server,
    start_private_sshd, summarize_collapsed, tree_cpu_seconds,
)
from _common import OPENSSH_INSTALL as INSTALL

ONEHOP_IP = "127.0.0.2"
WARMUP = 20
#: Same algorithms as onehop's server; MaxStartups raised so 1,000 logins may queue.
SSHD_EXTRA_CONFIG = """\
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
MaxStartups 2000
MaxSessions 10
"""


# -- process memory ----------------------------------------------------------------------

def tree_memory_kib(pid: int) -> tuple[int, int, int]:
    """(RSS, PSS, process count) of ``pid`` and its descendants, in KiB."""
    rss = pss = count = 0
    for p in descendants(pid):
        with contextlib.suppress(OSError):
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
            count += 1
    return rss, pss, count


# -- one measurement -----------------------------------------------------------------------

class LoadGen:
    """One ``tests/server/loadgen.py`` process, read line by line."""

    def __init__(self, procs: Processes, name: str, argv: list[str]) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.name = name
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.server.loadgen", *argv], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(os.path.join(procs.log_dir, f"{name}.log"), "wb"))
        procs.procs.append((name, self.proc, os.path.join(procs.log_dir, f"{name}.log")))
        self.procs = procs

    def expect(self, event: str) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise BenchError(f"{self.name} ended before {event!r}:\n{self.procs.log_tail(self.name)}")
            found = json.loads(line)
            if found["event"] == event:
                return found

    def finish(self) -> int:
        self.proc.stdin.write(b"done\n")
        self.proc.stdin.flush()
        alive = self.expect("alive")["alive"]
        self.proc.wait(120)
        return alive


def measure(procs: Processes, name: str, server_pid: int, loadgen_args: list[str], tunnels: int,
            concurrency: int, profile_dir: str | None) -> dict:
    warm = LoadGen(procs, f"{name}-warmup", loadgen_args + ["--tunnels", str(WARMUP)])
    warm.expect("holding")
    warm.finish()
    time.sleep(1.0)
    rss0, pss0, _ = tree_memory_kib(server_pid)
    cpu0 = tree_cpu_seconds(server_pid, include_reaped=True)
    profiler = start_profiler(profile_dir, name, server_pid)
    gen = LoadGen(procs, f"{name}-load", loadgen_args + ["--tunnels", str(tunnels),
                                                         "--concurrency", str(concurrency)])
    established = gen.expect("established")
    cpu1 = tree_cpu_seconds(server_pid, include_reaped=True)
    stop_profiler(profiler, profile_dir, name)
    gen.expect("holding")
    time.sleep(3.0)  # idle: let keepalive-free tunnels settle
    rss1, pss1, nproc = tree_memory_kib(server_pid)
    alive = gen.finish()
    n = max(1, established["count"])
    return {
        "server": name, "tunnels": established["count"], "failures": established["failures"],
        "alive": alive, "seconds": established["seconds"], "accept_per_second": n / established["seconds"],
        "server_cpu_ms_per_handshake": 1000 * (cpu1 - cpu0) / n,
        "rss_kib_per_tunnel": (rss1 - rss0) / n, "pss_kib_per_tunnel": (pss1 - pss0) / n,
        "server_rss_mib_held": rss1 / 1024, "server_processes_held": nproc,
    }


def start_profiler(profile_dir: str | None, name: str, pid: int):
    if not profile_dir or name != "onehop":
        return None
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        print("py-spy not found (pip install py-spy): no profile", file=sys.stderr)
        return None
    os.makedirs(profile_dir, exist_ok=True)
    out = os.path.join(profile_dir, f"{name}-accept.txt")
    return subprocess.Popen([py_spy, "record", "--format", "raw", "--rate", "200", "--output", out,
                             "--pid", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(profiler, profile_dir: str | None, name: str) -> None:
    if profiler is None:
        return
    profiler.send_signal(2)
    with contextlib.suppress(subprocess.TimeoutExpired):
        profiler.wait(30)
    path = os.path.join(profile_dir, f"{name}-accept.txt")
    if os.path.exists(path):
        print(f"\npy-spy profile of the {name} server while accepting ({path}):")
        print(summarize_collapsed(path, top=25))


# -- the run ---------------------------------------------------------------------------

def report(results: list[dict], tunnels: int) -> str:
    rows = [("", "tunnels", "accept/s", "CPU ms/hs", "RSS KiB/t", "PSS KiB/t", "held RSS MiB", "procs")]
    for r in results:
        rows.append((r["server"], f"{r['tunnels']}/{tunnels}", f"{r['accept_per_second']:.1f}",
                     f"{r['server_cpu_ms_per_handshake']:.2f}", f"{r['rss_kib_per_tunnel']:.1f}",
                     f"{r['pss_kib_per_tunnel']:.1f}", f"{r['server_rss_mib_held']:.1f}",
                     str(r["server_processes_held"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    by = {r["server"]: r for r in results}
    one, ssh = by.get("onehop"), by.get("sshd")
    if one and ssh:
        lines.append(f"\naccept rate ratio onehop/sshd = {one['accept_per_second'] / ssh['accept_per_second']:.2f}x;"
                     f" server CPU per handshake onehop/sshd = "
                     f"{one['server_cpu_ms_per_handshake'] / max(1e-9, ssh['server_cpu_ms_per_handshake']):.2f}x")
    if one:
        ratio = f" = {one['accept_per_second'] / ssh['accept_per_second']:.2f}x sshd" if ssh else ""
        lines.append(f"onehop: {one['alive']}/{tunnels} tunnels held, {one['rss_kib_per_tunnel']:.1f} KiB RSS per "
                     f"idle tunnel (target <= 100), {one['accept_per_second']:.1f} handshakes/s{ratio} "
                     f"(target >= 0.50x)")
    return "\n".join(lines)


def run(args) -> list[dict]:
    root = tempfile.mkdtemp(prefix="onehop-server-load-")
    procs = Processes(root)
    results = []
    try:
        onehop = start_onehop_server(procs, root, ONEHOP_IP, "ossh" if args.protocol == "OSSH" else "ssh",
                                     workers=args.workers)
        loadgen = ["onehop", "--entry", onehop.entry_file, "--protocol", args.protocol]
        if not args.no_api_handshake:
            loadgen.append("--api-handshake")
        results.append(measure(procs, "onehop", onehop.proc.pid, loadgen, args.tunnels, args.concurrency,
                               args.profile))
        if not args.skip_sshd:
            sshd = start_private_sshd(procs, root, ("-t", "rsa", "-b", "2048"), SSHD_EXTRA_CONFIG)
            results.append(measure(procs, "sshd", sshd.proc.pid, ["ssh", "--host", "127.0.0.1",
                                                                 "--port", str(sshd.port), "--user", sshd.user,
                                                                 "--key", sshd.client_key],
                                   args.tunnels, args.concurrency, None))
    finally:
        finish_run(procs, root, args.keep_temp)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="onehop server load beside OpenSSH sshd")
    parser.add_argument("--tunnels", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32, help="handshakes in flight (default 32)")
    parser.add_argument("--protocol", choices=("OSSH", "SSH"), default="OSSH")
    parser.add_argument("--no-api-handshake", action="store_true", help="onehop tunnels without the API handshake")
    parser.add_argument("--skip-sshd", action="store_true")
    parser.add_argument("--workers", type=int, default=None,
                        help="onehop server --workers (default: the server's, one per core)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the onehop server while it accepts")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--keep-temp", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_sshd and not os.access(SSHD, os.X_OK):
        print(f"{SSHD} is missing; install it with: {INSTALL} (or use --skip-sshd)", file=sys.stderr)
        return 3
    try:
        with signals_raise_keyboard_interrupt():
            results = run(args)
    except BenchError as exc:
        print(f"server_load: {exc}", file=sys.stderr)
        return 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    print(report(results, args.tunnels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
