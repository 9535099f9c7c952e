"""Shared pieces of the onehop benchmarks: processes, ports, a fast sink and load generator.

Run as a script it is one of the helper processes the benchmarks start:

    python bench/_common.py sink --host 127.0.0.1 --port P
        the destination of every transfer (see ``Sink``); prints ``READY <port>``.
    python bench/_common.py onehop-client --entry FILE --socks-port P --http-port Q \
            --data-dir D [--protocol OSSH]
        a onehop client Controller with Psiphon JSON notices on stdout, for when the
        ``onehop client`` command is not available.

The wire protocol between load generator and sink is one 9-byte header, ``b"D"`` or
``b"U"`` followed by a big-endian 64-bit byte count:

    D n: the sink sends n bytes, then FIN (a download for the load generator);
    U n: the load generator sends n bytes, the sink answers one byte ``K`` once it has
         them all (an upload). Timing ends when the last byte (or the K) arrives.

Both sides use blocking sockets, one thread per stream and 1 MiB ``sendall``/
``recv_into`` calls, which release the GIL: one such process moves several GB/s over
loopback, well above anything a tunnel reaches here.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Sequence

# The repository root, for tests.helpers: the pieces the tests and the benchmarks share.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.net import free_port, port_accepts
from tests.helpers.sshd import INSTALL as OPENSSH_INSTALL  # noqa: F401  (for the scripts)
from tests.helpers.sshd import SSHD, SshdUnavailable, prepare_sshd  # noqa: F401  (SSHD: for the scripts)
from tests.helpers.waiting import poll_until

CHUNK = 1 << 20
HEADER = struct.Struct("!cQ")
IO_TIMEOUT = 120.0  # seconds without progress before a stream counts as stalled


# -- ports and processes ---------------------------------------------------------------

def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the child if the benchmark process dies (Linux prctl)."""
    os.setpgrp()  # a terminal's Ctrl-C reaches only us; we stop the children in order
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Processes:
    """Child processes started by a benchmark; ``stop_all`` ends them (newest first)."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen, str]] = []

    def start(self, name: str, argv: Sequence[str], *, stdout_pipe: bool = False,
              env: dict | None = None, cwd: str | None = None,
              stderr_to_stdout: bool = False) -> subprocess.Popen:
        log_path = os.path.join(self.log_dir, f"{name}.log")
        log = open(log_path, "wb")
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE if stdout_pipe else log,
                                    stderr=subprocess.STDOUT if stderr_to_stdout else log,
                                    preexec_fn=_die_with_parent, env=env, cwd=cwd)
        finally:
            log.close()
        self.procs.append((name, proc, log_path))
        return proc

    def check_alive(self, name: str, proc: subprocess.Popen) -> None:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with status {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 25) -> str:
        path = os.path.join(self.log_dir, f"{name}.log")
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty log)"

    def stop_all(self, timeout: float = 5.0) -> None:
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.terminate()
        deadline = time.monotonic() + timeout
        for _, proc, _ in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(2.0)
            if proc.stdout is not None:
                with contextlib.suppress(OSError):
                    proc.stdout.close()
        self.procs.clear()


class BenchError(Exception):
    """A setup or transfer failure, with a readable message."""


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               alive: Callable[[], None] | None = None) -> None:
    try:
        poll_until(predicate, timeout, what, alive=alive)
    except AssertionError as exc:
        raise BenchError(str(exc)) from None


@contextlib.contextmanager
def signals_raise_keyboard_interrupt():
    """SIGTERM (and SIGHUP) behave like Ctrl-C, so ``finally`` blocks clean up."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _stat_fields(pid: int | str) -> list[bytes]:
    """The fields of /proc/PID/stat after the command name (so fields[1] is the ppid)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(_stat_fields(name)[1]), []).append(int(name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def tree_cpu_seconds(pid: int, include_reaped: bool = False) -> float:
    """User+system CPU seconds of ``pid`` and its live descendants; with ``include_reaped``
    also of children they already reaped (sshd's pre-authentication process, say)."""
    tick = os.sysconf("SC_CLK_TCK")
    last = 15 if include_reaped else 13  # utime stime [cutime cstime]
    total = 0.0
    for p in descendants(pid):
        with contextlib.suppress(OSError, IndexError):
            total += sum(int(x) for x in _stat_fields(p)[11:last]) / tick
    return total


def process_cpu_seconds(pid: int) -> dict[int, float]:
    """User+system CPU seconds of ``pid`` and of each live descendant, by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for p in descendants(pid):
        with contextlib.suppress(OSError, IndexError):
            found[p] = sum(int(x) for x in _stat_fields(p)[11:13]) / tick
    return found


# -- the servers under test --------------------------------------------------------------

# Benchmark the tunnel's data path with one cipher on both sides.
SSHD_BENCH_CONFIG = "Ciphers aes128-gcm@openssh.com\n"


def finish_run(procs: Processes, root: str, keep_temp: bool) -> None:
    """Stop every process the run started, then remove its temporary folder (or say where
    it was kept)."""
    procs.stop_all()
    if keep_temp:
        print(f"kept {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)


def onehop_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "onehop.cli", *args]


@dataclass
class OnehopServer:
    proc: subprocess.Popen
    ossh_port: int
    ssh_port: int
    entry_file: str


def start_onehop_server(procs: Processes, root: str, ip: str, listening_port: str,
                        workers: int | None = None) -> OnehopServer:
    """``onehop server generate`` + ``run`` on ``ip`` (OSSH and SSH ports); waits until
    the port named by ``listening_port`` ('ossh' or 'ssh') accepts connections.
    ``workers``: ``--workers`` (None: the server's default, one per core)."""
    server_dir = os.path.join(root, "onehop-server")
    ossh_port, ssh_port = free_port(ip), free_port(ip)
    gen = subprocess.run(onehop_cli("server", "generate", "--ip", ip, "--ossh-port", str(ossh_port),
                                    "--ssh-port", str(ssh_port), "--allow-bogons", "--out", server_dir),
                         capture_output=True, text=True)
    if gen.returncode != 0:
        raise BenchError(f"onehop server generate failed: {gen.stderr.strip() or gen.stdout.strip()}")
    run = ["server", "run", "--config", os.path.join(server_dir, "server.json")]
    proc = procs.start("onehop-server", onehop_cli(*run, *(["--workers", str(workers)] if workers else [])))
    port = ossh_port if listening_port == "ossh" else ssh_port
    wait_until(lambda: port_accepts(ip, port), 30, "the onehop server to listen",
               lambda: procs.check_alive("onehop-server", proc))
    return OnehopServer(proc, ossh_port, ssh_port, os.path.join(server_dir, "server-entry.dat"))


@dataclass
class PrivateSshd:
    proc: subprocess.Popen
    port: int
    user: str
    client_key: str


def start_private_sshd(procs: Processes, root: str, host_key_args: Sequence[str],
                       extra_config: str = "") -> PrivateSshd:
    """Debian's sshd (tests/helpers/sshd.py) with its own config, host key (``ssh-keygen``
    ``host_key_args``) and a client key for the current user, on a free port of 127.0.0.1."""
    try:
        sshd = prepare_sshd(Path(root) / "openssh", host_key_args=host_key_args,
                            extra_config=SSHD_BENCH_CONFIG + extra_config)
    except SshdUnavailable as exc:
        raise BenchError(str(exc)) from None
    proc = procs.start("sshd", sshd.argv)
    wait_until(lambda: port_accepts("127.0.0.1", sshd.port), 15, "sshd to listen",
               lambda: procs.check_alive("sshd", proc))
    return PrivateSshd(proc, sshd.port, pwd.getpwuid(os.getuid()).pw_name, sshd.client_key)


# -- the sink --------------------------------------------------------------------------

def _recv_exactly_into(sock: socket.socket, view: memoryview, n: int) -> None:
    got = 0
    while got < n:
        r = sock.recv_into(view[got:n])
        if not r:
            raise ConnectionError(f"connection closed after {got} of {n} bytes")
        got += r


def _sink_connection(conn: socket.socket, payload: memoryview) -> None:
    with conn:
        conn.settimeout(IO_TIMEOUT)
        try:
            head = bytearray(HEADER.size)
            _recv_exactly_into(conn, memoryview(head), HEADER.size)
            mode, n = HEADER.unpack(head)
            if mode == b"D":
                left = n
                while left > 0:
                    step = min(left, len(payload))
                    conn.sendall(payload[:step])
                    left -= step
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):  # wait for the peer's close: never reset
                    pass
            elif mode == b"U":
                buf = bytearray(CHUNK)
                view = memoryview(buf)
                left = n
                while left > 0:
                    r = conn.recv_into(view[:min(left, CHUNK)])
                    if not r:
                        raise ConnectionError(f"upload ended {left} bytes short")
                    left -= r
                conn.sendall(b"K")
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):
                    pass
        except (OSError, ConnectionError):
            pass  # readiness probes connect and close without a header


def run_sink(host: str, port: int) -> None:
    payload = memoryview(os.urandom(CHUNK))
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(256)
    print(f"READY {server.getsockname()[1]}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_sink_connection, args=(conn, payload), daemon=True).start()


# -- the load generator ----------------------------------------------------------------

Connector = Callable[[], socket.socket]


def direct(host: str, port: int) -> Connector:
    def connect() -> socket.socket:
        return socket.create_connection((host, port), timeout=IO_TIMEOUT)
    return connect


def via_socks5(proxy_port: int, host: str, port: int) -> Connector:
    """CONNECT through a SOCKS5 proxy on 127.0.0.1 (no auth, IPv4 literal), raw bytes."""
    request = b"\x05\x01\x00\x01" + socket.inet_aton(host) + struct.pack("!H", port)

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=IO_TIMEOUT)
        try:
            sock.sendall(b"\x05\x01\x00")
            buf = bytearray(262)
            view = memoryview(buf)
            _recv_exactly_into(sock, view, 2)
            if buf[:2] != b"\x05\x00":
                raise BenchError(f"SOCKS greeting refused: {bytes(buf[:2])!r}")
            sock.sendall(request)
            _recv_exactly_into(sock, view, 4)
            if buf[1] != 0:
                raise BenchError(f"SOCKS CONNECT to {host}:{port} failed with reply code {buf[1]}")
            atyp = buf[3]
            rest = {1: 4 + 2, 4: 16 + 2}.get(atyp)
            if rest is None:  # domain name: one length byte first
                _recv_exactly_into(sock, view[4:], 1)
                _recv_exactly_into(sock, view[5:], buf[4] + 2)
            else:
                _recv_exactly_into(sock, view[4:], rest)
            return sock
        except BaseException:
            sock.close()
            raise
    return connect


@dataclass
class _Stream:
    sock: socket.socket
    nbytes: int
    end: float = 0.0
    error: BaseException | None = None


def _download(stream: _Stream) -> None:
    sock = stream.sock
    sock.sendall(HEADER.pack(b"D", stream.nbytes))
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    left = stream.nbytes
    while left > 0:
        r = sock.recv_into(view, min(left, CHUNK))
        if not r:
            raise ConnectionError(f"download ended {left} bytes short")
        left -= r
    stream.end = time.perf_counter()


def _upload(stream: _Stream, payload: memoryview) -> None:
    sock = stream.sock
    sock.sendall(HEADER.pack(b"U", stream.nbytes))
    left = stream.nbytes
    while left > 0:
        step = min(left, len(payload))
        sock.sendall(payload[:step])
        left -= step
    if sock.recv(1) != b"K":
        raise ConnectionError("upload not acknowledged")
    stream.end = time.perf_counter()


_PAYLOAD = memoryview(os.urandom(CHUNK))


def transfer(connect: Connector, direction: str, streams: int, total: int) -> float:
    """Move ``total`` bytes split over ``streams`` parallel connections; return seconds.

    Every connection (and its SOCKS handshake) is set up first; the clock starts when
    all are ready and stops when the last stream has finished.
    """
    sizes = [total // streams + (1 if i < total % streams else 0) for i in range(streams)]
    return _run_streams([(connect, n) for n in sizes], direction)


def transfer_each(connectors: Sequence[Connector], direction: str, nbytes: int) -> float:
    """One stream of ``nbytes`` through each connector at once (say, one per tunnel client
    process); return the seconds from all streams connected to the last one finished."""
    return _run_streams([(connect, nbytes) for connect in connectors], direction)


def _run_streams(plan: Sequence[tuple[Connector, int]], direction: str) -> float:
    """Connect every (connector, bytes) stream, then move them all at once, one thread each."""
    socks: list[socket.socket] = []
    try:
        for connect, _ in plan:
            sock = connect()
            sock.settimeout(IO_TIMEOUT)
            socks.append(sock)
        states = [_Stream(sock, nbytes) for sock, (_, nbytes) in zip(socks, plan)]
        barrier = threading.Barrier(len(states) + 1)

        def run(state: _Stream) -> None:
            try:
                barrier.wait()
                if direction == "download":
                    _download(state)
                else:
                    _upload(state, _PAYLOAD)
            except BaseException as exc:  # reported below
                state.error = exc

        threads = [threading.Thread(target=run, args=(s,), daemon=True) for s in states]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        for i, s in enumerate(states):
            if s.error is not None:
                raise BenchError(f"{direction} stream {i + 1} of {len(states)} failed: "
                                 f"{type(s.error).__name__}: {s.error}")
        return max(s.end for s in states) - start
    finally:
        for sock in socks:
            sock.close()


# -- the onehop client process (fallback when `onehop client` is not available) -----------

def run_onehop_client(entry_file: str, socks_port: int, http_port: int, data_dir: str,
                      protocol: str) -> None:
    import asyncio

    from onehop.client.candidates import MemoryStore
    from onehop.client.config import ClientConfig
    from onehop.client.controller import Controller
    from onehop.client.notices import Notices
    from onehop.core.serverentry import decode_server_entry

    with open(entry_file, encoding="ascii") as f:
        entry = decode_server_entry(f.read().strip())
    config = ClientConfig(data_dir=data_dir, socks_port=socks_port, http_port=http_port,
                          protocols=(protocol,), tunnel_connect_timeout=10.0,
                          establish_pause=0.5)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        controller = Controller(config, MemoryStore([entry]), Notices(sys.stdout))
        task = loop.create_task(controller.run())
        stopper = loop.create_task(stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # surface the failure
        finally:
            task.cancel()
            stopper.cancel()
            await controller.close()

    asyncio.run(main())


# -- notices ---------------------------------------------------------------------------

@dataclass
class NoticeReader:
    """Reads a client's JSON notice lines in a thread (and keeps draining the pipe);
    with ``copy_to`` every line also goes to that file (the process's log)."""

    stream: object
    copy_to: str | None = None
    notices: list[dict] = field(default_factory=list)
    tunnels: int = 0
    socks_port: int | None = None

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        copy = open(self.copy_to, "ab", buffering=0) if self.copy_to else None
        try:
            self._read_lines(copy)
        finally:
            if copy is not None:
                copy.close()

    def _read_lines(self, copy) -> None:
        for raw in self.stream:  # type: ignore[attr-defined]
            if copy is not None:
                copy.write(raw if isinstance(raw, bytes) else raw.encode())
            try:
                notice = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(notice, dict):
                continue
            self.notices.append(notice)
            kind, data = notice.get("noticeType"), notice.get("data") or {}
            if kind == "Tunnels":
                self.tunnels = int(data.get("count", 0))
            elif kind == "ListeningSocksProxyPort":
                self.socks_port = int(data.get("port", 0))

    def since(self, index: int, skip: tuple[str, ...] = ("Info",)) -> list[dict]:
        """Notices received after the first ``index`` ones, without the ``skip`` types."""
        return [x for x in self.notices[index:] if x.get("noticeType") not in skip]

    def last(self, n: int = 8) -> str:
        return "\n".join("    " + json.dumps(x)[:300] for x in self.notices[-n:]) or "    (no notices)"


# -- profiling summaries ---------------------------------------------------------------

#: Leaf functions of a thread that is waiting, not working (the event loop's epoll_wait,
#: asyncio's child watcher in wait4, a worker blocked reading its pipe); the last two are
#: the same waits as py-spy shows them without --native.
IDLE_LEAVES = ("epoll_wait", "wait4", "poll", "select", "futex", "nanosleep", "clock_nanosleep", "read ",
               "EpollSelector.select (", "_worker (concurrent/futures/thread.py")


def summarize_collapsed(path: str, top: int = 20) -> str:
    """Top functions by self and by inclusive samples from a py-spy ``--format raw`` file;
    samples of waiting threads (IDLE_LEAVES) are counted apart, the shares are of the rest."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    total = idle = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            if frames and frames[0].startswith(("process ", "thread ")):
                frames = [fr for fr in frames if not fr.startswith(("process ", "thread "))]
            if not frames:
                continue
            if frames[-1].startswith(IDLE_LEAVES):
                idle += n
                continue
            total += n
            self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + n
            for fr in set(frames):
                incl_counts[fr] = incl_counts.get(fr, 0) + n
    if not total:
        return f"    (no busy samples; {idle} waiting)"
    out = [f"    {total} busy samples ({idle} more waiting, left out); self time:"]
    for name, n in sorted(self_counts.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"    {100 * n / total:5.1f}%  {name}")
    out.append("    inclusive:")
    for name, n in sorted(incl_counts.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"    {100 * n / total:5.1f}%  {name}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="helper processes of the onehop benchmarks")
    sub = parser.add_subparsers(dest="role", required=True)
    s = sub.add_parser("sink")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    c = sub.add_parser("onehop-client")
    c.add_argument("--entry", required=True)
    c.add_argument("--socks-port", type=int, required=True)
    c.add_argument("--http-port", type=int, required=True)
    c.add_argument("--data-dir", required=True)
    c.add_argument("--protocol", default="OSSH", choices=("OSSH", "OSSH-PREFIX", "SSH"))
    args = parser.parse_args(argv)
    if args.role == "sink":
        run_sink(args.host, args.port)
    else:
        run_onehop_client(args.entry, args.socks_port, args.http_port, args.data_dir, args.protocol)
    return 0


if __name__ == "__main__":
    sys.exit(main())
