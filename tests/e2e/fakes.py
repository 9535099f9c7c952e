"""Misbehaving servers and instrumented proxies for end-to-end tests."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct

from aiohttp import web

from tests.helpers.net import copy_stream


class Blackhole:
    """Accepts connections, reads everything, never answers (a censor's black hole)."""

    def __init__(self) -> None:
        self.server: asyncio.AbstractServer | None = None
        self.accepted = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        async def swallow(reader, writer):
            self.accepted += 1
            try:
                while await reader.read(65536):
                    pass
            except ConnectionError:
                pass
            finally:
                writer.close()
        self.server = await asyncio.start_server(swallow, host, port)
        return self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self.server:
            self.server.close()


class Resetter:
    """Accepts connections and resets them at once."""

    def __init__(self) -> None:
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        async def reset(reader, writer):
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self.server = await asyncio.start_server(reset, host, port)
        return self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self.server:
            self.server.close()


class CountingProxy:
    """A minimal HTTP CONNECT or SOCKS5 (no-auth or user/pass) proxy that counts bytes."""

    def __init__(self, kind: str, username: str | None = None, password: str | None = None) -> None:
        self.kind = kind
        self.username, self.password = username, password
        self.bytes_relayed = 0
        self.connections = 0
        self.targets: list[tuple[str, int]] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self.server:
            self.server.close()

    async def _handle(self, reader, writer):
        try:
            target = await (self._http(reader, writer) if self.kind == "http" else self._socks5(reader, writer))
            if target is None:
                writer.close()
                return
            self.connections += 1
            self.targets.append(target)
            up_reader, up_writer = await asyncio.open_connection(*target)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            writer.close()

    async def _pipe(self, reader, writer):
        await copy_stream(reader, writer, self._count)

    def _count(self, data: bytes) -> bytes:
        self.bytes_relayed += len(data)
        return data

    async def _http(self, reader, writer):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        method, authority, _ = head.split("\r\n", 1)[0].split(" ")
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return None
        host, port = authority.rsplit(":", 1)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return host.strip("[]"), int(port)

    async def _socks5(self, reader, writer):
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        wanted = 2 if self.username else 0
        if version != 5 or wanted not in methods:
            writer.write(b"\x05\xff")
            return None
        writer.write(bytes([5, wanted]))
        if wanted == 2:
            _, ulen = await reader.readexactly(2)
            user = await reader.readexactly(ulen)
            plen = (await reader.readexactly(1))[0]
            password = await reader.readexactly(plen)
            ok = user.decode() == self.username and password.decode() == self.password
            writer.write(b"\x01\x00" if ok else b"\x01\x01")
            if not ok:
                return None
        _, cmd, _, atyp = await reader.readexactly(4)
        if atyp == 1:
            host = socket.inet_ntoa(await reader.readexactly(4))
        elif atyp == 3:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        else:
            host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
        port = struct.unpack(">H", await reader.readexactly(2))[0]
        writer.write(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
        return host, port


class FileServer:
    """Serves in-memory files with ETag, Range and If-Match / If-None-Match support, and
    can misbehave: cut a download after N bytes, or change a file's ETag."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.etag_salt: dict[str, str] = {}
        self.cut_after: dict[str, int] = {}   # path -> bytes to send before cutting (once)
        self.requests: list[dict] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    def etag(self, path: str) -> str:
        digest = hashlib.sha256(self.files[path] + self.etag_salt.get(path, "").encode()).hexdigest()
        return f'"{digest[:16]}"'

    async def start(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self.port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def close(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    async def _handle(self, request: web.Request):
        path = request.path
        self.requests.append({"path": path, "method": request.method, **dict(request.headers)})
        if request.method == "PUT":
            self.files[path] = await request.read()
            return web.Response(status=200)
        if path not in self.files:
            return web.Response(status=404)
        body, etag = self.files[path], self.etag(path)
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        start = 0
        if "Range" in request.headers:
            if request.headers.get("If-Match") not in (None, etag):
                return web.Response(status=412)
            start = int(request.headers["Range"].split("=")[1].split("-")[0])
            if start >= len(body):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(body)}"})
        status = 206 if start else 200
        headers = {"ETag": etag, "Content-Length": str(len(body) - start)}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        chunk = body[start:]
        cut = self.cut_after.pop(path, None)
        if cut is not None:
            await response.write(chunk[:cut])
            request.transport.close()  # the connection drops mid-download
            return response
        await response.write(chunk)
        await response.write_eof()
        return response
