"""Running Psiphon's own binaries (../shared/psiphon) and onehop side by side on loopback.

Everything here is synchronous and process-based: each program is a real subprocess with its
log in a file under the test's tmp_path, stopped by PID at the end. Psiphon's binaries are
test fixtures only; nothing of onehop imports or ships them.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from collections.abc import Callable

import pytest

from tests.helpers.net import free_port
from tests.helpers.waiting import poll_until

PSIPHON_DIR = Path(os.environ.get("ONEHOP_PSIPHON_DIR",
                                  Path(__file__).resolve().parents[2].parent / "shared" / "psiphon"))
PSIPHOND = PSIPHON_DIR / "psiphond"
PSIPHON_CLIENT = PSIPHON_DIR / "psiphon-tunnel-core"
ONEHOP = [sys.executable, "-m", "onehop.cli"]
CHANNEL, SPONSOR = "FFFFFFFFFFFFFFFF", "FFFFFFFFFFFFFFFF"


def require_psiphon() -> None:
    """Skip with the reason when Psiphon's binaries are absent; under ONEHOP_CI=1, fail."""
    missing = [str(p) for p in (PSIPHOND, PSIPHON_CLIENT) if not os.access(p, os.X_OK)]
    if missing:
        reason = (f"Psiphon's binaries are not at {PSIPHON_DIR} (missing: {', '.join(missing)}; "
                  "ONEHOP_PSIPHON_DIR names another directory)")
        if os.environ.get("ONEHOP_CI") == "1":
            pytest.fail(reason + "; CI must have ../shared/psiphon")
        pytest.skip(reason)


def wait_for_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    def accepts() -> bool:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
        except OSError:
            return False
        return True
    poll_until(accepts, timeout, f"{host}:{port} to accept connections")


class Process:
    """A subprocess with its output in ``log``; ``stop()`` ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, args: list[str], log: Path, cwd: Path | None = None, env: dict | None = None) -> None:
        self.log = log
        self._out = open(log, "wb")
        self.proc = subprocess.Popen([str(a) for a in args], stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=cwd, env=env)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()
        return self.proc.returncode


class Processes:
    """Every process a test started, stopped in reverse order at teardown."""

    def __init__(self) -> None:
        self._all: list[Process] = []

    def start(self, args: list[str], log: Path, **kwargs) -> Process:
        process = Process(args, log, **kwargs)
        self._all.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self._all):
            process.stop()


# ------------------------------------------------------------------------------ servers


class OnehopServer:
    """``onehop server generate`` + ``onehop server run`` on 127.0.0.1; its own log goes to
    ``server.log``, at ``log_level`` if given (at DEBUG it says which API requests it accepted)."""

    def __init__(self, procs: Processes, directory: Path, protocols: tuple[str, ...] = ("OSSH", "SSH"),
                 config_overrides: dict | None = None, log_level: str | None = None) -> None:
        self.directory = directory
        self.ports = {name: free_port() for name in protocols}
        args = ["server", "generate", "--ip", "127.0.0.1", "--allow-bogons", "--out", str(directory)]
        args += ["--ossh-port", str(self.ports["OSSH"])] if "OSSH" in self.ports else ["--no-ossh"]
        if "SSH" in self.ports:
            args += ["--ssh-port", str(self.ports["SSH"])]
        done = subprocess.run([*ONEHOP, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        self.config_path = directory / "server.json"
        config = json.loads(self.config_path.read_text())
        config.setdefault("LogFilename", str(directory / "events.log"))
        config.update(config_overrides or {})
        self.config_path.write_text(json.dumps(config, indent=2))
        self.config = config
        self.events_path = Path(config["LogFilename"])
        self.entry = (directory / "server-entry.dat").read_text().strip()
        self.log = directory / "server.log"
        level = ["--log-level", log_level] if log_level else []
        self.process = procs.start([*ONEHOP, *level, "server", "run", "--config", self.config_path], self.log)
        for port in self.ports.values():
            wait_for_port(port)

    def events(self, name: str | None = None) -> list[dict]:
        if not self.events_path.exists():
            return []
        lines = [json.loads(line) for line in self.events_path.read_text().splitlines() if line.strip()]
        return [e for e in lines if name is None or e.get("event_name") == name]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


class Psiphond:
    """Psiphon's own server: ``psiphond generate`` then ``psiphond run`` in ``directory``, on
    loopback address ``ip``; ``tactics_parameters`` become the default tactics of
    ``psiphond-tactics.config`` before it runs."""

    def __init__(self, procs: Processes, directory: Path, protocols: tuple[str, ...] = ("OSSH", "SSH"),
                 config_overrides: dict | None = None, ip: str = "127.0.0.1",
                 tactics_parameters: dict | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.ports = {name: free_port(ip) for name in protocols}
        args = [PSIPHOND, "-ipaddress", ip]
        for name, port in self.ports.items():
            args += ["-protocol", f"{name}:{port}"]
        done = subprocess.run([str(a) for a in [*args, "generate"]], cwd=directory,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        if tactics_parameters:
            tactics_path = directory / "psiphond-tactics.config"
            tactics = json.loads(tactics_path.read_text())
            tactics["DefaultTactics"] = {"TTL": "1m", "Probability": 1.0, "Parameters": tactics_parameters}
            tactics_path.write_text(json.dumps(tactics, indent=2))
        self.config_path = directory / "psiphond.config"
        config = json.loads(self.config_path.read_text())
        config["AllowBogons"] = True
        config["LogFilename"] = str(directory / "psiphond.log")
        config.update(config_overrides or {})
        self.config_path.write_text(json.dumps(config, indent=2))
        self.config = config
        self.entry = (directory / "server-entry.dat").read_text().strip()
        self.process = procs.start([PSIPHOND, "-config", self.config_path, "run"],
                                   directory / "stderr.log", cwd=directory)
        for port in self.ports.values():
            wait_for_port(port, host=ip)

    def log_lines(self) -> list[dict]:
        path = Path(self.config["LogFilename"])
        if not path.exists():
            return []
        out = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def events(self, name: str) -> list[dict]:
        return [line for line in self.log_lines() if line.get("event_name") == name]

    def problems(self) -> list[dict]:
        """Warnings and errors: a failed API request is logged as the warning "request failed"."""
        return [line for line in self.log_lines() if line.get("level") in ("warning", "error", "fatal")]


# ------------------------------------------------------------------------------ clients


class NoticeClient:
    """A client process writing notices, one JSON object a line, to ``notices_path``."""

    name = "client"
    notices_path: Path
    process: Process

    def notices(self, notice_type: str | None = None) -> list[dict]:
        if not self.notices_path.exists():
            return []
        out = []
        for line in self.notices_path.read_text(errors="replace").splitlines():
            try:
                notice = json.loads(line)
            except ValueError:
                continue
            if isinstance(notice, dict) and (notice_type is None or notice.get("noticeType") == notice_type):
                out.append(notice)
        return out

    def last_errors(self, n: int = 4) -> str:
        bad = [n_ for n_ in self.notices() if n_.get("noticeType") in ("Alert", "Error", "Warning")]
        return json.dumps(bad[-n:])[:1500]

    def exit_detail(self) -> str:
        return self.last_errors()

    def wait_notice(self, notice_type: str, predicate: Callable[[dict], bool] = lambda d: True,
                    timeout: float = 30.0) -> dict:
        def found():
            for notice in self.notices(notice_type):
                if predicate(notice.get("data", {})):
                    return notice
            if not self.process.alive() and notice_type != "Exiting":
                raise AssertionError(f"{self.name} exited before {notice_type}: {self.exit_detail()}")
            return None
        try:
            return poll_until(found, timeout, f"{self.name} notice {notice_type}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last notices: {self.last_errors()}") from None

    def wait_tunnel(self, timeout: float = 60.0) -> None:
        self.wait_notice("Tunnels", lambda d: d.get("count", 0) >= 1, timeout)

    @property
    def socks_port(self) -> int:
        return self.wait_notice("ListeningSocksProxyPort")["data"]["port"]

    @property
    def http_port(self) -> int:
        return self.wait_notice("ListeningHttpProxyPort")["data"]["port"]


class PsiphonClient(NoticeClient):
    """Psiphon's console client with a JSON config; notices go to ``notices.log``."""

    name = "Psiphon's client"

    def __init__(self, procs: Processes, directory: Path, config: dict, args: tuple[str, ...] = ()) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "data").mkdir(exist_ok=True)
        self.directory = directory
        self.config = {
            "PropagationChannelId": CHANNEL, "SponsorId": SPONSOR, "ClientPlatform": "Linux_interop",
            "ClientVersion": "1", "DataRootDirectory": str(directory / "data"),
            "LocalSocksProxyPort": 0, "LocalHttpProxyPort": 0,
            "DisableRemoteServerListFetcher": True, "DisableTactics": True,
            "EmitDiagnosticNotices": True, **config,
        }
        self.config_path = directory / "client.json"
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self.notices_path = directory / "notices.log"
        self.process = procs.start([PSIPHON_CLIENT, "-config", self.config_path,
                                    "-notices", self.notices_path, *args],
                                   directory / "stderr.log", cwd=directory)


class OnehopClient(NoticeClient):
    """``onehop client`` as a process, printing notices (one JSON object a line) to a file."""

    name = "onehop client"

    def __init__(self, procs: Processes, directory: Path, args: list[str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.notices_path = directory / "notices.log"
        self.process = procs.start([*ONEHOP, "client", "--notices", "--data-dir", directory / "data",
                                    "--socks-port", "0", "--http-port", "0", *args], self.notices_path)

    def exit_detail(self) -> str:
        return self.process.output()[-1500:]


# --------------------------------------------------------------------------- web side


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.requests.append((self.command, self.path, dict(self.headers)))  # type: ignore[attr-defined]
        body = self.server.files.get(self.path.split("?", 1)[0])  # type: ignore[attr-defined]
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        etag = '"' + hashlib.md5(body).hexdigest() + '"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = 0, len(body)
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes=") and "," not in ranged:
            first, _, last = ranged[6:].partition("-")
            if first.isdigit() and int(first) < len(body):
                start = int(first)
                end = int(last) + 1 if last.isdigit() else len(body)
                end = min(end, len(body))
        self.send_response(206 if (start, end) != (0, len(body)) else 200)
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if (start, end) != (0, len(body)):
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(body)}")
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        self.wfile.write(body[start:end])

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.server.requests.append((self.command, self.path, dict(self.headers)))  # type: ignore[attr-defined]
        self.server.uploads[self.path] = body  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT

    def log_message(self, *args) -> None:
        pass


class WebServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 that serves ``files`` (path -> bytes) with ETags
    (S3 sends one; Psiphon's client imports a remote list only with one), byte ranges, and
    keeps every PUT/POST body in ``uploads``."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.files = dict(files or {})  # type: ignore[attr-defined]
        self.httpd.uploads = {}  # type: ignore[attr-defined]
        self.httpd.requests = []  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def files(self) -> dict[str, bytes]:
        return self.httpd.files  # type: ignore[attr-defined]

    @property
    def uploads(self) -> dict[str, bytes]:
        return self.httpd.uploads  # type: ignore[attr-defined]

    @property
    def requests(self) -> list:
        return self.httpd.requests  # type: ignore[attr-defined]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def socks5_get(socks_port: int, host: str, port: int, path: str, timeout: float = 20.0) -> bytes:
    """GET ``path`` from host:port through a SOCKS5 proxy and return the body.

    The body is read by its Content-Length: Psiphon's port forwards do not pass a half-close,
    so waiting for EOF would hang.
    """
    with socket.create_connection(("127.0.0.1", socks_port), timeout=timeout) as sock:
        sock.sendall(b"\x05\x01\x00")
        assert _recv_exact(sock, 2) == b"\x05\x00"
        name = host.encode()
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
        reply = _recv_exact(sock, 4)
        assert reply[1] == 0, f"SOCKS connect refused with code {reply[1]}"
        _recv_exact(sock, {1: 4 + 2, 4: 16 + 2}.get(reply[3]) or _recv_exact(sock, 1)[0] + 2)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += _recv_exact(sock, 1)
        status = head.split(b"\r\n", 1)[0]
        assert b" 200 " in status + b" ", f"unexpected status {status!r}"
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        return _recv_exact(sock, length)
