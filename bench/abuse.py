"""What hostile clients cost a server: each attack of issue 18, run against a real server.

    python bench/abuse.py [--server-src DIR] [--only random,status,...] [--repeat 3]

The server is ``python -m onehop.cli server run`` started with ``PYTHONPATH=--server-src``
(default: this checkout's src/), so the same attacks can be run against an older commit
(``git worktree add /tmp/old COMMIT`` then ``--server-src /tmp/old/src``) to show before and
after in one sitting. The attackers are this checkout's client code, on loopback only, each
bounded in count and time.

Attacks and what is printed (medians over --repeat rounds; the last line is the summary):

* random:  20 random@psiphon.ca channels asking 10 MiB each with a 1 KiB window, never read;
           the server's RSS growth after 2 s.
* status:  8 pipelined psiphon-status requests of about 250 KB each, crafted for a quadratic
           redaction; the worst and median round trip a well-behaved client sees through its
           own tunnel (100-byte echo every 10 ms) during the flood.
* preauth: 150 silent TCP connections from one source against a server limited to 128
           descriptors, then a real client's time to a tunnel and the bytes the server wrote
           to stderr.

Client-side attacks (hostile mirrors growing a resumed download, unsigned entries, idle
local-proxy connections) are measured by their tests in tests/security/, which print
their figures; they attack this checkout's client code, so they have no --server-src.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent))  # tests.helpers

import asyncssh

from onehop.client.config import ClientConfig
from onehop.client.dialer import dial
from onehop.core import api
from onehop.core.serverentry import decode_server_entry
from onehop.net.dial import connect_socket
from tests.helpers.net import free_port, start_echo_server

MIB = 1024 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Server:
    """A server process from ``src`` with its own config in ``root``."""

    def __init__(self, src: Path, root: Path, nofile: int | None = None, **config) -> None:
        self.env = dict(os.environ, PYTHONPATH=str(src))
        self.port = free_port()
        out = root / "srv"
        subprocess.run([sys.executable, "-m", "onehop.cli", "server", "generate", "--ip", "127.0.0.1",
                        "--ossh-port", str(self.port), "--allow-bogons", "--out", str(out)],
                       env=self.env, check=True, capture_output=True, timeout=120)
        path = out / "server.json"
        merged = {**json.loads(path.read_text()), "LogFilename": str(out / "events.log"), **config}
        path.write_text(json.dumps(merged))
        self.entry = decode_server_entry((out / "server-entry.dat").read_text().strip())
        self.stderr_path = root / "server.stderr"
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "onehop.cli", "server", "run", "--config",
                                          str(path)], env=self.env, stdout=subprocess.DEVNULL,
                                         stderr=err, preexec_fn=limit)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(0.5)  # key-derivation workers

    def stderr_bytes(self) -> int:
        return self.stderr_path.stat().st_size

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


async def tunnel_to(server: Server):
    return await dial(server.entry, "OSSH", ClientConfig(), os.urandom(16).hex(), connect_socket)


# ----------------------------------------------------------------------------- attacks


async def attack_random(server: Server) -> dict:
    tunnel = await tunnel_to(server)
    conn = tunnel.client.conn
    before = rss_kib(server.proc.pid)
    opened = refused = 0
    for _ in range(20):
        chan = conn.create_tcp_channel(window=1024)
        try:
            await chan._open(b"random@psiphon.ca", json.dumps({"u": 0, "d": 10 * MIB}).encode())
        except asyncssh.ChannelOpenError:
            refused += 1
            continue
        chan._session = asyncssh.SSHTCPSession()
        chan._session.connection_made(chan)
        opened += 1
    await asyncio.sleep(2.0)
    grown = rss_kib(server.proc.pid) - before
    tunnel.client.close()
    return {"rss_growth_mib": round(grown / 1024, 1), "opened": opened, "refused": refused}


def crafted_status(hostile: bool = True) -> bytes:
    """About 250 KB of failed_tunnel records whose free text defeats a quadratic redactor."""
    slow = "a" * 1023 + ":"
    record = {"client_failed_timestamp": "2026-12-01T10:00:00Z", "tunnel_error": slow,
              "server_entry_tag": slow, "session_id": "0" * 32, "last_connected": "None"}
    params = {"propagation_channel_id": "FFFFFFFFFFFFFFFF", "sponsor_id": "FFFFFFFFFFFFFFFF",
              "client_version": "1", "client_platform": "Linux_bench",
              "statusData": {"failed_tunnel_stats": [record] * 112}}
    return api.encode_request_params(params, packed=False)


async def attack_status(server: Server) -> dict:
    srv, port = await start_echo_server()
    good, bad = await tunnel_to(server), await tunnel_to(server)
    reader, writer = await good.client.conn.open_connection("127.0.0.1", port)
    payload = crafted_status()
    latencies: list[float] = []
    stop = asyncio.Event()

    async def ping() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            writer.write(b"x" * 100)
            await reader.readexactly(100)
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0.01)

    pinger = asyncio.create_task(ping())
    await asyncio.sleep(0.3)
    baseline = list(latencies)
    started = time.perf_counter()
    results = await asyncio.gather(*(bad.client.api_request("psiphon-status", payload, timeout=60)
                                     for _ in range(8)), return_exceptions=True)
    flood_seconds = time.perf_counter() - started
    during = latencies[len(baseline):]
    stop.set()
    await pinger
    writer.close()
    await asyncio.sleep(0.2)  # the echo handler sees EOF and ends
    for t in (good, bad):
        t.client.close()
    srv.close()
    return {"worst_rtt_ms": round(max(during or [0]) * 1000, 1),
            "median_rtt_ms": round(statistics.median(during or [0]) * 1000, 2),
            "idle_rtt_ms": round(statistics.median(baseline or [0]) * 1000, 2),
            "flood_s": round(flood_seconds, 2), "payload_kb": len(payload) // 1000,
            "answered": sum(1 for r in results if isinstance(r, bytes))}


async def _silent(port: int, source: str, stop: asyncio.Event, stats: dict) -> None:
    """One silent connection from ``source``, re-opened 0.2 s after the server closes it."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 5)
        except (TimeoutError, OSError):
            await asyncio.sleep(0.2)
            continue
        reading = asyncio.ensure_future(reader.read(65536))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([reading, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if reading.done() and not reading.cancelled() and reading.exception() is None:
            stats["bytes_back"] += len(reading.result())
        else:
            reading.cancel()
        writer.close()
        await asyncio.sleep(0.2)


async def attack_preauth(server: Server) -> dict:
    stop, stats = asyncio.Event(), {"bytes_back": 0}
    flood = [asyncio.ensure_future(_silent(server.port, "127.0.0.5", stop, stats)) for _ in range(150)]
    await asyncio.sleep(2.0)
    started = time.monotonic()
    try:
        tunnel = await asyncio.wait_for(tunnel_to(server), 10)
        took = round(time.monotonic() - started, 2)
        tunnel.client.close()
    except (TimeoutError, OSError, Exception):  # no tunnel is the result we measure
        took = None
    stop.set()
    await asyncio.gather(*flood, return_exceptions=True)
    return {"tunnel_s": took if took is not None else "none in 10 s", "tunnel_s_or_10": took or 10.0,
            "stderr_kb": round(server.stderr_bytes() / 1024, 1), "bytes_back": stats["bytes_back"]}


ATTACKS = {"random": (attack_random, "rss_growth_mib"), "status": (attack_status, "worst_rtt_ms"),
           "preauth": (attack_preauth, "tunnel_s_or_10")}
#: Attacks whose server runs with few descriptors (RLIMIT_NOFILE).
NOFILE = {"preauth": 128}


def run_round(name: str, src: Path) -> dict:
    attack, _ = ATTACKS[name]
    with tempfile.TemporaryDirectory(prefix="onehop-abuse-") as tmp:
        server = Server(src, Path(tmp), nofile=NOFILE.get(name), **(
            {"SSHHandshakeTimeoutMilliseconds": 30000, "OSSHKeyDerivationWorkers": 0} if name == "preauth" else {}))
        try:
            return asyncio.run(attack(server))
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-src", type=Path, default=HERE.parent / "src",
                        help="the src/ directory whose server is attacked (default: this checkout)")
    parser.add_argument("--only", default=",".join(ATTACKS), help="comma-separated attacks")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per attack (median reported)")
    args = parser.parse_args(argv)
    summary = []
    for name in args.only.split(","):
        _, key = ATTACKS[name]
        rounds = [run_round(name, args.server_src) for _ in range(args.repeat)]
        for i, result in enumerate(rounds, 1):
            print(f"{name} round {i}: {json.dumps(result)}", flush=True)
        median = statistics.median(r[key] for r in rounds)
        summary.append(f"{name} {key}={median}")
    print(f"abuse ({args.server_src}): " + "; ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
