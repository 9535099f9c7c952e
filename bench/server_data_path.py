#!/usr/bin/env python3
"""Server CPU per GiB under load: several tunnels moving data through one server at once.

One onehop server (``onehop server run``) and N onehop clients (``onehop client``, each
its own process and tunnel); optionally a private sshd with N ``ssh -N -L`` clients
beside it. Each round, every client carries one stream of ``--mib`` MiB at the same
time (upload or download, to ``_common.py sink``); the result is the server process
tree's user+system CPU seconds per GiB moved, the figure the server's data path costs
when it is busy (a quiet single stream hides per-wakeup costs that load amortizes and
adds contention that a single stream never sees).

    python bench/server_data_path.py                          # 4 clients x 128 MiB upload, 3 rounds
    python bench/server_data_path.py --direction download --sshd
    python bench/server_data_path.py --profile /tmp/prof      # py-spy raw samples of one round (workers too)
    python bench/server_data_path.py --workers 1 --sshd       # one worker process instead of one per core
    python bench/server_data_path.py --strace /tmp/strace.txt # syscall counts of one round

The median of the rounds is printed last. py-spy and strace slow the server: their
rounds are extra and not counted in the median.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import (
    BenchError, NoticeReader, Processes, descendants, free_port, onehop_cli, port_accepts,
    signals_raise_keyboard_interrupt,
    start_onehop_server, start_private_sshd, summarize_collapsed, transfer, tree_cpu_seconds, via_socks5,
    direct, wait_until,
)

from _common import OPENSSH_INSTALL
from _stats import tick_per_gib
from throughput import check_openssh

COMMON = os.path.join(HERE, "_common.py")
ONEHOP_IP = "127.0.0.2"
SINK_HOST = "127.0.0.1"
GIB = 1 << 30


def start_sink(procs: Processes) -> int:
    proc = procs.start("sink", [sys.executable, COMMON, "sink", "--host", SINK_HOST], stdout_pipe=True)
    line = proc.stdout.readline().decode().split()
    if len(line) != 2 or line[0] != "READY":
        raise BenchError(f"the sink did not start: {line!r}")
    return int(line[1])


def start_client(procs: Processes, root: str, name: str, entry: str, protocol: str) -> int:
    socks_port, http_port = free_port(), free_port()
    argv = onehop_cli("client", "--target-server-entry", "@" + entry, "--socks-port", str(socks_port),
                      "--http-port", str(http_port), "--data-dir", os.path.join(root, name), "--notices",
                      "--protocol", protocol)
    proc = procs.start(name, argv, stdout_pipe=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    notices = NoticeReader(proc.stdout, copy_to=os.path.join(procs.log_dir, f"{name}-notices.log"))
    wait_until(lambda: notices.tunnels >= 1, 90, f"{name}'s tunnel", lambda: procs.check_alive(name, proc))
    return notices.socks_port or socks_port


def start_ssh_clients(procs: Processes, root: str, n: int, sink_port: int) -> tuple[int, list[int]]:
    sshd = start_private_sshd(procs, root, ("-t", "ed25519"))
    ports = []
    for i in range(n):
        lport = free_port()
        proc = procs.start(f"ssh-{i}", [
            "ssh", "-N", "-F", "/dev/null", "-L", f"{lport}:{SINK_HOST}:{sink_port}",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "Ciphers=aes128-gcm@openssh.com", "-o", "Compression=no", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-i", sshd.client_key,
            "-p", str(sshd.port), f"{sshd.user}@127.0.0.1"])
        wait_until(lambda lport=lport: port_accepts("127.0.0.1", lport), 20, "ssh -L",
                   lambda i=i, proc=proc: procs.check_alive(f"ssh-{i}", proc))
        ports.append(lport)
    return sshd.proc.pid, ports


def user_system_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11]) / tick
        system += int(fields[12]) / tick
    return user, system


def concurrent_round(connectors, direction: str, nbytes: int, server_pid: int) -> tuple[float, float, str]:
    """Every connector moves ``nbytes`` at once; returns (server CPU s/GiB, wall seconds,
    the user/system split of the server's live processes, as text)."""
    results: list[object] = [None] * len(connectors)
    us0 = user_system_seconds(server_pid)
    cpu0, t0 = tree_cpu_seconds(server_pid, include_reaped=True), time.perf_counter()

    def run(i: int) -> None:
        try:
            results[i] = transfer(connectors[i], direction, 1, nbytes)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(connectors))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = tree_cpu_seconds(server_pid, include_reaped=True) - cpu0
    for r in results:
        if isinstance(r, BaseException):
            raise BenchError(f"a stream failed: {r!r}")
    us1 = user_system_seconds(server_pid)
    gib = nbytes * len(connectors) / GIB
    split = f"user {(us1[0] - us0[0]) / gib:.2f} + system {(us1[1] - us0[1]) / gib:.2f}"
    return cpu / gib, wall, split


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=4, help="tunnel clients, one stream each (default 4)")
    p.add_argument("--mib", type=int, default=128,
                   help="MiB per client per round, the profiled round's too (default 128)")
    p.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    p.add_argument("--direction", choices=("upload", "download"), default="upload",
                   help="which way the bytes go, from the clients' side (default upload)")
    p.add_argument("--protocol", default="OSSH", choices=("OSSH", "SSH"), help="onehop's tunnel protocol")
    p.add_argument("--sshd", action="store_true", help="the same load through sshd too")
    p.add_argument("--profile", metavar="DIR", help="an extra round under py-spy (raw samples, --native)")
    p.add_argument("--strace", metavar="FILE", help="an extra round under strace -c -f")
    p.add_argument("--perf", metavar="FILE", help="an extra round under perf record -e cpu-clock -g")
    p.add_argument("--workers", type=int, default=None,
                   help="the onehop server's --workers (default: its own default, one per core)")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args()
    tools = [name for name, wanted in (("py-spy", args.profile), ("strace", args.strace), ("perf", args.perf))
             if wanted and shutil.which(name) is None]
    if tools:
        print(f"error: {', '.join(tools)} not found on PATH (py-spy: pip install py-spy; strace, perf: "
              "apt-get install strace linux-perf)", file=sys.stderr)
        return 2
    missing = check_openssh() if args.sshd else None
    if missing:
        print(f"error: --sshd needs OpenSSH ({missing} not found). Install it with:\n  {OPENSSH_INSTALL}",
              file=sys.stderr)
        return 3
    nbytes = args.mib << 20
    print(f"server_data_path: {args.clients} x {args.mib} MiB {args.direction}, {args.rounds} rounds; "
          f"CPU from /proc, one clock tick = "
          f"{tick_per_gib(nbytes * args.clients, os.sysconf('SC_CLK_TCK')):.3f} s/GiB at this size", flush=True)
    root = tempfile.mkdtemp(prefix="onehop-datapath-")
    procs = Processes(root)
    out: dict = {"clients": args.clients, "mib": args.mib, "direction": args.direction}
    try:
        with signals_raise_keyboard_interrupt():
            sink_port = start_sink(procs)
            server = start_onehop_server(procs, root, ONEHOP_IP, "ossh" if args.protocol == "OSSH" else "ssh",
                                         workers=args.workers)
            socks = [start_client(procs, root, f"client-{i}", server.entry_file, args.protocol)
                     for i in range(args.clients)]
            onehop = [via_socks5(port, SINK_HOST, sink_port) for port in socks]
            paths = [("onehop", server.proc.pid, onehop)]
            if args.sshd:
                sshd_pid, lports = start_ssh_clients(procs, root, args.clients, sink_port)
                paths.append(("sshd", sshd_pid, [direct("127.0.0.1", lp) for lp in lports]))
            for _, pid, conns in paths:  # warm-up (16 MiB each, not counted)
                concurrent_round(conns, args.direction, 16 << 20, pid)
            figures: dict[str, list[float]] = {name: [] for name, _, _ in paths}
            for r in range(args.rounds):
                for name, pid, conns in paths:
                    cpu, wall, split = concurrent_round(conns, args.direction, nbytes, pid)
                    figures[name].append(cpu)
                    mbps = nbytes * len(conns) / wall / 1e6
                    print(f"round {r + 1} {name:7s} {cpu:5.2f} CPU-s/GiB ({split})  {mbps:6.1f} MB/s total",
                          flush=True)
            medians = {name: statistics.median(values) for name, values in figures.items()}
            for name, median in medians.items():
                how = f"onehop {args.protocol}" if name == "onehop" else "ssh -L, aes128-gcm"
                print(f"median  {name:7s} {median:5.2f} CPU-s/GiB [{min(figures[name]):.2f}-{max(figures[name]):.2f}] "
                      f"({args.clients} x {args.mib} MiB {args.direction}, {how})")
            if "sshd" in medians and medians["sshd"] > 0:
                print(f"ratio   onehop/sshd {medians['onehop'] / medians['sshd']:.2f}x server CPU per GiB")
            out["cpu_s_per_gib"] = figures
            if args.profile:
                os.makedirs(args.profile, exist_ok=True)
                raw = os.path.join(args.profile, "server.txt")
                spy = subprocess.Popen(["py-spy", "record", "--native", "--format", "raw", "--rate", "200",
                                        "--subprocesses", "-o", raw, "--pid", str(server.proc.pid)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1.0)
                concurrent_round(onehop, args.direction, nbytes, server.proc.pid)  # not counted
                spy.send_signal(2)
                spy.wait(30)
                print(summarize_collapsed(raw, top=30))
            if args.strace:
                st = subprocess.Popen(["strace", "-c", "-f", "-o", args.strace,
                                       *[a for pid in descendants(server.proc.pid) for a in ("-p", str(pid))]],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1.0)
                concurrent_round(onehop, args.direction, nbytes, server.proc.pid)  # not counted
                st.send_signal(2)
                st.wait(30)
                with open(args.strace) as f:
                    print(f"strace -c ({args.clients} x {args.mib} MiB):\n" + f.read())
            if args.perf:
                server_pids = ",".join(map(str, descendants(server.proc.pid)))  # the supervisor and its workers
                pf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-o", args.perf,
                                       "-p", server_pids],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1.0)
                concurrent_round(onehop, args.direction, nbytes, server.proc.pid)  # not counted
                pf.send_signal(2)
                pf.wait(60)
                print(f"perf data: {args.perf} (perf report -i {args.perf} --no-children --sort dso,sym)")
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
