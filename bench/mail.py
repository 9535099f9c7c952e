"""Mail responder: requests answered per second end to end, and the latency from a
request to its delivered replies, through a local sink relay.

    python bench/mail.py                      # 300 requests, 8 clients, 512 KiB build
    python bench/mail.py --requests 1000 --clients 16 --build-kib 4096
    python bench/mail.py --quick              # 100 requests, 4 clients, for development

Three processes: the responder (``onehop mail run``, state in a temp dir), the sink relay
(``python bench/mail.py sink``: it prints when each reply arrives) and this one, the load
generator: every request comes from a distinct sender (so the per-sender limit does not
interfere) over a fresh smtplib connection, ``--clients`` at a time. Each request gets
two replies: the links message and the build attached. Three runs, side by side:

* ``plain``: unsigned replies, relay = aiosmtpd (a real SMTP server in Python that reads
  DATA line by line: tens of ms of its CPU per 700 kB reply);
* ``dkim``: the same, DKIM-signed (rsa-sha256, relaxed/relaxed, dkimpy);
* ``dkim-raw``: DKIM-signed into a minimal raw-socket sink, which shows the responder's
  own ceiling when the relay costs (almost) nothing.

Figures: accepted/s (requests acknowledged with 250, i.e. durably queued, per second
while the load ran); answered/s (requests whose two replies were both delivered, per
second, from the first request sent to the last reply delivered); latency from request
sent to the links reply and to both replies (p50, p99); the responder's CPU per request.
The headline (last line) is ``dkim`` through aiosmtpd, as operators run it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (
    BenchError,
    Processes,
    finish_run,
    free_port,
    port_accepts,
    signals_raise_keyboard_interrupt,
    tree_cpu_seconds,
    wait_until,
)

ADDRESS = "get@bench.example.org"
IDLE_REQUESTS = 20


# -- the sink relay (a child process) ---------------------------------------------------

def report_arrival(data: bytes) -> None:
    """One line per reply on stdout: its In-Reply-To and the (system-wide) monotonic time."""
    now = time.monotonic()
    head = bytes(data[: data.find(b"\r\n\r\n")])
    key = "-"
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"in-reply-to:"):
            key = line.split(b":", 1)[1].strip().decode()
    sys.stdout.write(f"R {key} {now:.6f}\n")
    sys.stdout.flush()


class AiosmtpdSink:
    async def handle_DATA(self, server, session, envelope):
        report_arrival(envelope.original_content)
        return "250 OK"


class RawSink(asyncio.Protocol):
    """Just enough SMTP for aiosmtplib: DATA ends at the first CRLF.CRLF, found in chunks."""

    def connection_made(self, transport) -> None:
        self.transport, self.buf, self.in_data = transport, bytearray(), False
        transport.write(b"220 raw sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.buf:
            if self.in_data:
                end = self.buf.find(b"\r\n.\r\n")
                if end < 0:
                    return
                report_arrival(self.buf[: end + 2])
                del self.buf[: end + 5]
                self.in_data = False
                self.transport.write(b"250 OK\r\n")
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                return
            verb = bytes(self.buf[:4]).upper()
            del self.buf[: end + 2]
            self._command(verb)

    def _command(self, verb: bytes) -> None:
        if verb == b"EHLO":
            self.transport.write(b"250-raw sink\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")
        elif verb == b"DATA":
            self.in_data = True
            self.transport.write(b"354 go on\r\n")
        elif verb == b"QUIT":
            self.transport.write(b"221 bye\r\n")
            self.transport.close()
        else:
            self.transport.write(b"250 OK\r\n")


def run_sink(kind: str, port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        if kind == "raw":
            await loop.create_server(RawSink, "127.0.0.1", port)
        else:
            from aiosmtpd.smtp import SMTP
            await loop.create_server(lambda: SMTP(AiosmtpdSink(), data_size_limit=None), "127.0.0.1", port)
        print("READY", flush=True)
        await asyncio.Event().wait()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    asyncio.run(main())


class Arrivals:
    """Reads a sink's arrival lines in a thread."""

    def __init__(self, stream) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = {}
        self.count = 0
        self.ready = threading.Event()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for raw in stream:
            line = raw.decode().split()
            if line == ["READY"]:
                self.ready.set()
            elif len(line) == 3 and line[0] == "R":
                with self.lock:
                    self.times.setdefault(line[1], []).append(float(line[2]))
                    self.count += 1


# -- the run -----------------------------------------------------------------------------

def write_export(root: str, build_kib: int) -> str:
    mail = os.path.join(root, "export", "mail")
    os.makedirs(os.path.join(mail, "builds"))
    with open(os.path.join(mail, "builds", "c1.pyz"), "wb") as f:
        f.write(os.urandom(build_kib * 1024))
    entry = {"campaign_id": "c1", "channel_id": "ch1", "channel_name": "Bench", "sponsor_id": "s1",
             "sponsor_name": "Bench sponsor", "language": None,
             "links": ["https://dl.example.net/onehop.zip", "https://mirror.example.com/onehop.zip"],
             "attachment": {"path": "builds/c1.pyz", "filename": "onehop-bench.zip",
                            "content_type": "application/zip"}}
    path = os.path.join(mail, "responder.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"version": 1, "addresses": {ADDRESS: entry}}, f)
    return path


def make_dkim_key(root: str) -> str:
    path = os.path.join(root, "dkim.pem")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    return path


def request_bytes(i: int, run: str) -> bytes:
    return (f"From: Person {i} <p{i}@users.bench.test>\r\nTo: {ADDRESS}\r\nSubject: please\r\n"
            f"Message-ID: <{run}-{i}@users.bench.test>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Hello, please send me the app.\r\n").encode()


def send_one(port: int, i: int, run: str) -> float:
    start = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.sendmail(f"p{i}@users.bench.test", [ADDRESS], request_bytes(i, run))
    return start


@dataclass
class Result:
    name: str
    requests: int
    accepted_per_s: float
    answered_per_s: float
    links_ms: list[float]
    full_ms: list[float]
    cpu_ms_per_request: float
    idle_full_ms: list[float]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_responder(procs: Processes, root: str, name: str, config: str, relay_port: int,
                    dkim_key: str | None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    argv = [sys.executable, "-m", "onehop.cli", "--log-level", "WARNING", "mail", "run", "--config", config,
            "--listen", f"127.0.0.1:{port}", "--relay", f"127.0.0.1:{relay_port}",
            "--state-dir", os.path.join(root, f"state-{name}"), "--max-replies-per-minute", "1000000",
            "--max-replies-per-day", "1000", "--hostname", "bench.example.org"]
    if dkim_key:
        argv += ["--dkim-key", dkim_key, "--dkim-selector", "bench", "--dkim-domain", "bench.example.org"]
    proc = procs.start(f"responder-{name}", argv)
    wait_until(lambda: port_accepts("127.0.0.1", port), 30, "the responder to listen",
               lambda: procs.check_alive(f"responder-{name}", proc))
    return proc, port


def start_sink(procs: Processes, name: str, kind: str) -> tuple[Arrivals, int]:
    port = free_port()
    sink = procs.start(f"sink-{name}", [sys.executable, os.path.abspath(__file__), "sink", "--kind", kind,
                                        "--port", str(port)], stdout_pipe=True)
    arrivals = Arrivals(sink.stdout)
    if not arrivals.ready.wait(30):
        raise BenchError(f"the {kind} sink did not start:\n{procs.log_tail(f'sink-{name}')}")
    return arrivals, port


def run_case(procs: Processes, root: str, name: str, sink_kind: str, config: str, dkim_key: str | None,
             requests: int, clients: int) -> Result:
    arrivals, relay_port = start_sink(procs, name, sink_kind)
    proc, port = start_responder(procs, root, name, config, relay_port, dkim_key)

    def alive() -> None:
        procs.check_alive(f"responder-{name}", proc)

    with ThreadPoolExecutor(clients) as pool:
        warm = list(pool.map(lambda i: send_one(port, i, f"warm-{name}"), range(clients)))
        wait_until(lambda: arrivals.count >= 2 * len(warm), 120, "the warm-up replies", alive)
        base, cpu0 = arrivals.count, tree_cpu_seconds(proc.pid)
        t0 = time.monotonic()
        starts = list(pool.map(lambda i: send_one(port, i, name), range(requests)))
    accepted = time.monotonic() - t0
    wait_until(lambda: arrivals.count - base >= 2 * requests, 900, f"{2 * requests} replies", alive)
    cpu = tree_cpu_seconds(proc.pid) - cpu0
    time.sleep(0.3)
    if arrivals.count - base != 2 * requests:
        raise BenchError(f"{arrivals.count - base} replies for {requests} requests: expected exactly two each")
    idle = idle_latencies(port, arrivals, f"idle-{name}", IDLE_REQUESTS, alive)
    procs.stop_all()
    links_ms, full_ms, last = [], [], 0.0
    for i, start in enumerate(starts):
        times = sorted(arrivals.times[f"<{name}-{i}@users.bench.test>"])
        links_ms.append((times[0] - start) * 1000)
        full_ms.append((times[-1] - start) * 1000)
        last = max(last, times[-1])
    return Result(name, requests, requests / accepted, requests / (last - t0), links_ms, full_ms,
                  cpu / requests * 1000, idle)


def idle_latencies(port: int, arrivals: Arrivals, run: str, n: int, alive) -> list[float]:
    """Request -> both replies delivered, one request at a time (no queue in front)."""
    result = []
    for i in range(n):
        start = send_one(port, i, run)
        key = f"<{run}-{i}@users.bench.test>"
        wait_until(lambda key=key: len(arrivals.times.get(key, ())) >= 2, 60, "an idle reply", alive)
        result.append((max(arrivals.times[key]) - start) * 1000)
    return result


def report(results: list[Result], args) -> None:
    print(f"mail responder, end to end through a local sink relay: {args.requests} requests, "
          f"{args.clients} clients, {args.build_kib} KiB build attached (2 replies per request)")
    print("latency under load: request -> links reply / -> both replies, all requests sent at once "
          f"by {args.clients} clients; idle: one request at a time ({IDLE_REQUESTS} requests)")
    print(f"{'run':<9} {'accepted/s':>10} {'answered/s':>10} {'links p50':>10} {'links p99':>10} "
          f"{'full p50':>9} {'full p99':>9} {'idle p50':>9} {'idle p99':>9} {'CPU/request':>11}")
    for r in results:
        print(f"{r.name:<9} {r.accepted_per_s:>10.1f} {r.answered_per_s:>10.1f} "
              f"{statistics.median(r.links_ms):>8.0f}ms {pct(r.links_ms, 0.99):>8.0f}ms "
              f"{statistics.median(r.full_ms):>7.0f}ms {pct(r.full_ms, 0.99):>7.0f}ms "
              f"{statistics.median(r.idle_full_ms):>7.0f}ms {pct(r.idle_full_ms, 0.99):>7.0f}ms "
              f"{r.cpu_ms_per_request:>9.1f}ms")
    by = {r.name: r for r in results}
    print(f"DKIM-signed / unsigned: answer rate {by['dkim'].answered_per_s / by['plain'].answered_per_s:.2f}x, "
          f"responder CPU per request {by['dkim'].cpu_ms_per_request / by['plain'].cpu_ms_per_request:.2f}x")
    print(f"raw sink / aiosmtpd sink (DKIM): answer rate "
          f"{by['dkim-raw'].answered_per_s / by['dkim'].answered_per_s:.2f}x")
    h = by["dkim"]
    print(f"headline: {h.answered_per_s:.1f} requests answered/s end to end (DKIM-signed, {args.build_kib} KiB "
          f"build, aiosmtpd sink); request -> both replies delivered p50 {statistics.median(h.idle_full_ms):.0f} ms, "
          f"p99 {pct(h.idle_full_ms, 0.99):.0f} ms idle, p50 {statistics.median(h.full_ms):.0f} ms, "
          f"p99 {pct(h.full_ms, 0.99):.0f} ms under load")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role")
    sink = sub.add_parser("sink", help="(internal) the sink relay process")
    sink.add_argument("--kind", choices=("aiosmtpd", "raw"), default="aiosmtpd")
    sink.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--build-kib", type=int, default=512)
    parser.add_argument("--quick", action="store_true", help="100 requests, 4 clients")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs, state)")
    args = parser.parse_args(argv)
    if args.role == "sink":
        run_sink(args.kind, args.port)
        return 0
    if args.quick:
        args.requests, args.clients = 100, 4
    root = tempfile.mkdtemp(prefix="onehop-mail-bench-")
    procs = Processes(root)
    try:
        with signals_raise_keyboard_interrupt():
            config = write_export(root, args.build_kib)
            key = make_dkim_key(root)
            cases = [("plain", "aiosmtpd", None), ("dkim", "aiosmtpd", key), ("dkim-raw", "raw", key)]
            results = [run_case(procs, root, name, kind, config, k, args.requests, args.clients)
                       for name, kind, k in cases]
        report(results, args)
        return 0
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        finish_run(procs, root, args.keep_temp)


if __name__ == "__main__":
    sys.exit(main())
