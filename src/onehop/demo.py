"""``onehop demo``: a throwaway network on loopback, a client, a page through a tunnel.

Generates N servers on distinct 127.0.0.x addresses (SQLite-free: each server reads
its own exported files), starts them and a client in this process, fetches a page from
a local web server through the client's SOCKS proxy, checks it arrived intact, prints a
short summary and cleans up. Exit status 0 only if the page arrived intact.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field

from .client.candidates import MemoryStore
from .client.config import ClientConfig
from .client.controller import Controller
from .client.notices import Notices
from .core.api.protocols import CLIENT_PROTOCOLS
from .core.serverentry import decode_server_entry
from .core.upstreamproxy import ProxyConnected, Socks5ClientHandshake
from .errors import OnehopError
from .server.config import load_server_config
from .server.generate import generate_server, write_server_dir
from .server.service import TunnelServer


@dataclass
class DemoResult:
    ok: bool
    reason: str = ""
    lines: list[str] = field(default_factory=list)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def serve_page(body: bytes) -> tuple[asyncio.AbstractServer, int]:
    """A minimal HTTP/1.1 server on 127.0.0.1 that returns ``body`` for any GET."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def fetch_via_socks(socks_port: int, host: str, port: int, path: str = "/") -> bytes:
    """GET http://host:port/path through a SOCKS5 proxy; return the response body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", socks_port)
    try:
        handshake = Socks5ClientHandshake(host, port)
        while True:
            event = handshake.next_event()
            writer.write(handshake.data_to_send())
            if isinstance(event, ProxyConnected):
                break
            data = await reader.read(4096)
            if not data:
                raise OnehopError("the SOCKS proxy closed the connection")
            handshake.receive_data(data)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        response = handshake.trailing_data() + await reader.read()
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise OnehopError(f"unexpected response: {head[:60]!r}")
    return body


async def run_demo(servers: int = 3, protocols: tuple[str, ...] = CLIENT_PROTOCOLS,
                   workdir: str | None = None, verbose: bool = False) -> DemoResult:
    own_dir = workdir is None
    root = workdir or tempfile.mkdtemp(prefix="onehop-demo-")
    result = DemoResult(False)
    running: list[TunnelServer] = []
    controller = None
    page_server = None
    try:
        entries = []
        for i in range(servers):
            ip = f"127.0.0.{i + 2}"
            generated = generate_server(ip, ossh_port=free_port(ip), ssh_port=free_port(ip),
                                        allow_bogons=True, region=("CA", "DE", "JP")[i % 3])
            config_path, _ = write_server_dir(os.path.join(root, f"server-{i + 1}"), generated)
            server = TunnelServer(load_server_config(config_path))
            await server.start()
            running.append(server)
            entries.append(decode_server_entry(generated.encoded_entry))
        result.lines.append(f"started {servers} servers on 127.0.0.2-127.0.0.{servers + 1} "
                            f"(OSSH and SSH each; throwaway configs under {root})")

        body = (b"<html><body><h1>onehop demo</h1><pre>\n"
                + os.urandom(96 * 1024).hex().encode() + b"\n</pre></body></html>\n")
        page_server, page_port = await serve_page(body)

        notices = Notices(sys.stdout if verbose else None)
        config = ClientConfig(data_dir=os.path.join(root, "client"), socks_port=0, http_port=0,
                              protocols=protocols, tunnel_connect_timeout=10.0)
        controller = Controller(config, MemoryStore(entries), notices)
        started = time.monotonic()
        await asyncio.wait_for(controller.run(stop_after_first=True), 30)
        tunnel = controller.active
        assert tunnel is not None
        result.lines.append(f"tunnel up in {time.monotonic() - started:.2f}s to "
                            f"{tunnel.entry.ip_address} ({tunnel.entry.region}) over {tunnel.protocol}; "
                            f"SOCKS on 127.0.0.1:{controller.socks_port}, HTTP on 127.0.0.1:{controller.http_port}")
        assert controller.socks_port is not None  # the tunnel is up, so the proxies are listening
        got = await asyncio.wait_for(fetch_via_socks(controller.socks_port, "127.0.0.1", page_port), 30)
        if hashlib.sha256(got).digest() != hashlib.sha256(body).digest():
            result.reason = f"page arrived corrupted ({len(got)} of {len(body)} bytes)"
            return result
        result.lines.append(f"fetched http://127.0.0.1:{page_port}/ through the tunnel: "
                            f"{len(got)} bytes, SHA-256 matches")
        result.ok = True
        return result
    except (TimeoutError, OnehopError, OSError) as exc:
        result.reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return result
    finally:
        if controller is not None:
            await controller.close()
        for server in running:
            await server.stop()
        if page_server is not None:
            page_server.close()
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)


def main_demo(servers: int, protocols: tuple[str, ...], verbose: bool) -> int:
    result = asyncio.run(run_demo(servers, protocols, verbose=verbose))
    for line in result.lines:
        print(f"  {line}")
    if result.ok:
        print("demo OK: a page was fetched intact through a onehop tunnel")
        return 0
    print(f"demo FAILED: {result.reason}", file=sys.stderr)
    return 1
