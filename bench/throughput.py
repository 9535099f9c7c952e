#!/usr/bin/env python3
"""Tunnel throughput: onehop's SOCKS proxy beside raw loopback and OpenSSH ``ssh -L``.

One run starts, all on loopback:

* a sink (its own process, see ``_common.py``), the destination of every transfer;
* a private OpenSSH server (own temp dir, host key, client key and sshd_config,
  aes128-gcm@openssh.com only) and ``ssh -N -L`` forwarding a local port to the sink;
* a onehop server on 127.0.0.2 (``onehop server run``, AllowBogons) and a onehop client
  (a separate process) with its SOCKS proxy, tunnelling to the sink;

then moves the same byte count (default 512 MiB) through each path: one stream and
eight (which split the total), download and upload. The load generator is this
process (blocking sockets, 1 MiB calls, one thread per stream). The tests run
interleaved (raw, OpenSSH, onehop for each case) so drift on a shared machine hits
all three alike. It prints MB/s (10^6 bytes per second), the ratios, and last the
headline figure: onehop one-stream download as a multiple of OpenSSH (target >= 0.60).

OSSH obfuscation stops after NEWKEYS, so bulk data through onehop pays only SSH's
own cipher (aes128-gcm here as in OpenSSH), plus Python's per-packet overhead.

    python bench/throughput.py                 # 512 MiB per test, OSSH
    python bench/throughput.py --mib 64 --protocol SSH --json out.json
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

COMMON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_common.py")
CIPHER = "aes128-gcm@openssh.com"
ONEHOP_IP = "127.0.0.2"
SINK_HOST = "127.0.0.1"

PATHS = (("raw", "raw loopback"), ("openssh", "OpenSSH -L"), ("onehop", "onehop SOCKS"))
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


def start_onehop(procs: Processes, root: str, protocol: str, runner: str) -> tuple[int, dict[str, int]]:
    """A onehop server and client (separate processes); returns (SOCKS port, pids)."""
    started = start_onehop_server(procs, root, ONEHOP_IP, "ssh")
    server, entry = started.proc, started.entry_file
    socks_port, http_port = free_port(), free_port()
    data_dir = os.path.join(root, "onehop-client")
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
    client = procs.start("onehop-client", argv, stdout_pipe=True, env=env)
    notices = NoticeReader(client.stdout)

    def alive() -> None:
        for name, proc in (("onehop-client", client), ("onehop-server", server)):
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with status {proc.returncode}:\n{procs.log_tail(name)}\n"
                                 f"  last notices:\n{notices.last()}")
    try:
        wait_until(lambda: notices.tunnels >= 1, 60, "the onehop client's tunnel (Tunnels count 1)", alive)
    except BenchError as exc:
        raise BenchError(f"{exc}\n  last notices:\n{notices.last()}") from None
    socks_port = notices.socks_port or socks_port
    return socks_port, {"client": client.pid, "server": server.pid, "runner": runner}  # type: ignore[dict-item]


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
    """Run every case; returns (MB/s samples, CPU seconds per GiB samples by role)."""
    total = args.mib * 1024 * 1024
    samples: dict[str, dict[str, list[float]]] = {p: {} for p, _ in PATHS}
    cpu: dict[str, dict[str, dict[str, list[float]]]] = {p: {} for p in roles}
    if args.warmup_mib > 0:
        for path, _ in PATHS:
            transfer(connectors[path], "download", 1, args.warmup_mib * 1024 * 1024)
    for streams, direction in CASES:
        key = case_key(streams, direction)
        for rep in range(args.repeat):
            for path, label in PATHS:
                profile = profiler is not None and path == "onehop" and streams == 1 and rep == 0
                if profile:
                    profiler.start(key)
                before = {r: tree_cpu_seconds(pid) for r, pid in roles.get(path, {}).items()}
                try:
                    seconds = transfer(connectors[path], direction, streams, total)
                finally:
                    if profile:
                        for p in profiler.stop():
                            print(f"  profile written: {p}", flush=True)
                rate = mbps(total, seconds)
                samples[path].setdefault(key, []).append(rate)
                for r, pid in roles.get(path, {}).items():
                    used = tree_cpu_seconds(pid) - before[r]
                    cpu[path].setdefault(key, {}).setdefault(r, []).append(used / (args.mib / 1024))
                print(f"  {case_label(streams, direction):18} {label:14} {rate:9.1f} MB/s  "
                      f"({seconds:.2f} s)", flush=True)
    return samples, cpu


def fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def report(args, samples: dict, cpu: dict) -> dict:
    med = {p: {k: statistics.median(v) for k, v in cases.items()} for p, cases in samples.items()}
    per = args.mib / 8
    print()
    print(f"Throughput, MB/s (10^6 bytes/s), {args.mib} MiB per test (8 streams: {per:g} MiB each), "
          f"onehop protocol {args.protocol}, cipher {CIPHER}"
          + (f", median of {args.repeat}" if args.repeat > 1 else ""))
    head = f"{'test':20}" + "".join(f"{label:>15}" for _, label in PATHS)
    print(head)
    print("-" * len(head))
    for streams, direction in CASES:
        key = case_key(streams, direction)
        print(f"{case_label(streams, direction):20}" + "".join(f"{med[p][key]:15.1f}" for p, _ in PATHS))
    print()
    head = f"{'ratio':20}{'onehop/OpenSSH':>16}{'onehop/raw':>14}{'OpenSSH/raw':>14}"
    print(head)
    print("-" * len(head))
    ratios = {}
    for streams, direction in CASES:
        key = case_key(streams, direction)
        o, s, r = med["onehop"][key], med["openssh"][key], med["raw"][key]
        ratios[key] = {"onehop/openssh": o / s, "onehop/raw": o / r, "openssh/raw": s / r}
        print(f"{case_label(streams, direction):20}{fmt_ratio(o, s):>16}{fmt_ratio(o, r):>14}{fmt_ratio(s, r):>14}")
    print()
    cpu_med = {p: {k: {r: statistics.median(v) for r, v in roles.items()} for k, roles in cases.items()}
               for p, cases in cpu.items()}
    print("CPU seconds per GiB moved (user+sys of the tunnel processes; lower is better)")
    head = f"{'test':20}{'ssh':>9}{'sshd':>9}{'onehop client':>15}{'onehop server':>15}"
    print(head)
    print("-" * len(head))
    for streams, direction in CASES:
        key = case_key(streams, direction)
        s, o = cpu_med["openssh"][key], cpu_med["onehop"][key]
        print(f"{case_label(streams, direction):20}{s['client']:9.2f}{s['server']:9.2f}"
              f"{o['client']:15.2f}{o['server']:15.2f}")
    print()
    return {"mbps": med, "samples": samples, "ratios": ratios, "cpu_seconds_per_gib": cpu_med}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=512, help="MiB moved per test (default 512)")
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
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs, configs)")
    args = parser.parse_args(argv)
    if args.mib < 8 or args.repeat < 1:
        parser.error("--mib must be >= 8 and --repeat >= 1")

    missing = check_openssh()
    if missing:
        print(f"throughput: OpenSSH is needed for the comparison ({missing} not found). Install it with:\n"
              f"  {INSTALL}", file=sys.stderr)
        return 3

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
            socks_port, pids = start_onehop(procs, root, args.protocol, args.client_runner)
            print(f"  sink 127.0.0.1:{sink_port}; ssh -L 127.0.0.1:{lport}; onehop SOCKS 127.0.0.1:{socks_port} "
                  f"({args.protocol} to {ONEHOP_IP}; client pid {pids['client']} via {pids['runner']}, "
                  f"server pid {pids['server']}); load generator pid {os.getpid()}", flush=True)
            connectors = {"raw": direct(SINK_HOST, sink_port), "openssh": direct("127.0.0.1", lport),
                          "onehop": via_socks5(socks_port, SINK_HOST, sink_port)}
            profiler = Profiler(args.profile, pids, args.profile_rate) if args.profile else None
            roles = {"openssh": ssh_pids, "onehop": {"client": pids["client"], "server": pids["server"]}}
            samples, cpu = run_all(args, connectors, roles, profiler)
            result = report(args, samples, cpu)
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
