"""Time to first tunnel when most candidates are black holes, and recovery after the
active server dies, beside a single direct connection to a good server (same run).

    python bench/establish.py                # 100 candidates, 90 black holes, 5 runs
    python bench/establish.py --candidates 200 --good 5 --runs 9

Good servers run as separate ``onehop server run`` processes (so one can be killed);
the black holes (accept, read, never answer) run in one helper process; the client
Controller runs here. Targets (issue 4): median time to first tunnel < 3 s, within the
first round; recovery after the active server is killed < 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Processes, free_port, port_accepts, wait_until

from onehop.client.candidates import MemoryStore
from onehop.client.config import ClientConfig
from onehop.client.controller import Controller
from onehop.client.dialer import dial
from onehop.client.notices import Notices
from onehop.core.serverentry import decode_server_entry
from onehop.net.dial import socket_opener

BLACKHOLES = r"""
import asyncio, sys
async def main(addresses):
    async def swallow(reader, writer):
        try:
            while await reader.read(65536):
                pass
        finally:
            writer.close()
    for address in addresses:
        host, port = address.rsplit(":", 1)
        await asyncio.start_server(swallow, host, int(port))
    print("READY", flush=True)
    await asyncio.Event().wait()
asyncio.run(main(sys.argv[1:]))
"""


def start_good_servers(procs: Processes, root: str, count: int) -> list:
    entries = []
    for i in range(count):
        ip = f"127.0.5.{i + 1}"
        out = os.path.join(root, f"server{i}")
        port = free_port(ip)
        os.system(f"{sys.executable} -m onehop.cli server generate --ip {ip} --ossh-port {port} "
                  f"--allow-bogons --out {out} >/dev/null")
        proc = procs.start(f"server{i}", [sys.executable, "-m", "onehop.cli", "server", "run",
                                          "--config", os.path.join(out, "server.json")])
        with open(os.path.join(out, "server-entry.dat")) as f:
            entry = decode_server_entry(f.read().strip())
        wait_until(lambda ip=ip, port=port: port_accepts(ip, port), 20, f"server {ip}")
        entries.append((entry, proc))
    return entries


def start_blackholes(procs: Processes, template, count: int) -> list:
    addresses = [(f"127.0.{6 + i // 250}.{i % 250 + 1}",
                  free_port("127.0.0.1")) for i in range(count)]
    proc = procs.start("blackholes", [sys.executable, "-c", BLACKHOLES,
                                      *[f"{ip}:{port}" for ip, port in addresses]], stdout_pipe=True)
    if proc.stdout.readline().strip() != b"READY":
        raise SystemExit(f"black holes did not start:\n{procs.log_tail('blackholes')}")
    return [template.with_fields({"ipAddress": ip, "sshObfuscatedPort": port}) for ip, port in addresses]


async def direct_connection_seconds(entry, data_dir: str) -> float:
    config = ClientConfig(data_dir=data_dir, protocols=("OSSH",))
    started = time.monotonic()
    tunnel = await dial(entry, "OSSH", config, os.urandom(16).hex(), socket_opener(None))
    elapsed = time.monotonic() - started
    tunnel.client.close()
    return elapsed


async def first_tunnel_seconds(entries, data_dir: str) -> tuple[float, Controller, asyncio.Task]:
    config = ClientConfig(data_dir=data_dir, socks_port=0, http_port=0, protocols=("OSSH",))
    controller = Controller(config, MemoryStore(entries), Notices(None))
    await controller.start_proxies()
    started = time.monotonic()
    task = asyncio.get_running_loop().create_task(controller.run())
    while controller.active is None:
        await asyncio.sleep(0.005)
    return time.monotonic() - started, controller, task


async def stop(controller: Controller, task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await controller.close()


async def measure(args, good, holes, root) -> dict:
    entries = [e for e, _ in good] + holes
    direct = [await direct_connection_seconds(good[0][0], root) for _ in range(args.runs)]
    firsts = []
    for run in range(args.runs):
        seconds, controller, task = await first_tunnel_seconds(entries, os.path.join(root, f"c{run}"))
        firsts.append(seconds)
        await stop(controller, task)
    seconds, controller, task = await first_tunnel_seconds(entries, os.path.join(root, "kill"))
    victim_ip = controller.active.entry.ip_address
    victim = next(proc for entry, proc in good if entry.ip_address == victim_ip)
    killed_at = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    while controller.active is None or controller.active.entry.ip_address == victim_ip:
        await asyncio.sleep(0.005)
    recovery = time.monotonic() - killed_at
    await stop(controller, task)
    return {"direct": direct, "first": firsts, "recovery": recovery}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--good", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="onehop-establish-")
    procs = Processes(root)
    try:
        good = start_good_servers(procs, root, args.good)
        holes = start_blackholes(procs, good[0][0], args.candidates - args.good)
        result = asyncio.run(measure(args, good, holes, root))
    finally:
        procs.stop_all()
    direct = statistics.median(result["direct"])
    first = statistics.median(result["first"])
    print(f"candidates: {args.candidates} ({args.candidates - args.good} black holes, {args.good} good), "
          f"10 dial workers, OSSH")
    print(f"single direct connection to a good server: median {direct * 1000:.0f} ms over {args.runs}")
    print(f"time to first tunnel, each run:            {', '.join(f'{s:.2f}s' for s in result['first'])}")
    print(f"ratio first-tunnel / direct:               {first / direct:.1f}x")
    print(f"recovery after the active server was killed: {result['recovery']:.2f} s (target < 5 s)")
    print(f"time to first tunnel: median {first:.2f} s (target < 3 s)")
    return 0 if first < 3 and result["recovery"] < 5 else 1


if __name__ == "__main__":
    sys.exit(main())
