"""Uploads from Psiphon's client through a onehop server: more than Psiphon's 128 KiB window.

Psiphon's Go SSH believes at most 4 x 32 KiB of any window granted to it; a onehop server
that returned window only after 4 MiB stalled every upload at 128 KiB (found by
bench/throughput.py). The sink answers with the SHA-256 of what it got, framed by a length
prefix, since Psiphon's port forwards do not pass a half-close.
"""

from __future__ import annotations

import hashlib
import os
import socket
import socketserver
import struct
import threading

import pytest

from .harness import OnehopServer, PsiphonClient

SIZES = [1 << 20, 8 << 20]


class _Sink(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        (length,) = struct.unpack(">Q", self._exactly(8))
        digest = hashlib.sha256()
        left = length
        while left:
            chunk = self.request.recv(min(left, 1 << 16))
            if not chunk:
                return
            digest.update(chunk)
            left -= len(chunk)
        self.request.sendall(digest.digest())

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.request.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed early")
            data += chunk
        return data


@pytest.fixture
def sink():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def socks5_open(socks_port: int, port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", socks_port), timeout=30)
    sock.sendall(b"\x05\x01\x00")
    assert sock.recv(2) == b"\x05\x00"
    sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + port.to_bytes(2, "big"))
    reply = b""
    while len(reply) < 10:
        reply += sock.recv(10 - len(reply))
    assert reply[1] == 0, f"SOCKS refused: {reply[1]}"
    return sock


@pytest.mark.parametrize("protocol", ["OSSH", "SSH"])
def test_psiphon_client_uploads_through_a_onehop_server(tmp_path, procs, sink, protocol):
    server = OnehopServer(procs, tmp_path / "srv", protocols=(protocol,))
    client = PsiphonClient(procs, tmp_path / "cli", {"LimitTunnelProtocols": [protocol],
                                                     "TargetServerEntry": server.entry})
    client.wait_tunnel()
    for size in SIZES:
        payload = os.urandom(size)
        with socks5_open(client.socks_port, sink) as sock:
            sock.sendall(struct.pack(">Q", size) + payload)
            answer = b""
            while len(answer) < 32:
                chunk = sock.recv(32 - len(answer))
                assert chunk, f"the upload of {size} bytes stalled or was cut"
                answer += chunk
        assert answer == hashlib.sha256(payload).digest()
