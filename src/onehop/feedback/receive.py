"""``onehop feedback receive``: a small HTTP PUT endpoint that stores uploads in a directory.

Clients PUT each encrypted package to ``<FeedbackUploadURL>/<upload id>`` (Psiphon's way).
Each accepted body is written atomically into ``--to DIR`` (a hidden temporary file,
then a hard link under the upload's name, so a name is never replaced and
``feedback collect --from DIR``, which skips hidden files, never sees half a file).
Names are the upload ID when it is safe (letters, digits, ``-`` and ``_``), else a
random one. Bodies above ``--max-size`` get 413 before being read in full.

Privacy: nothing here records who uploaded: aiohttp's access log is off, the peer's
address is never read, and the stored files are only the encrypted bodies.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from ..core.redact import redact_addresses
from ..errors import ConfigError, ConfigProblem
from ..net.acceptgate import AcceptGate, GatedServer, ReleasingProtocol
from ..stopsignals import stop_event

DEFAULT_MAX_SIZE = 8 * 1024 * 1024  # what `collect` accepts by default
#: A connection must have sent on average this many bytes a second once GRACE_SECONDS have
#: passed, or it is closed: aiohttp has no header or body read timeout, and a connection
#: that sends nothing (or a byte now and then) would hold its place in the cap for ever.
GRACE_SECONDS = 30.0
MIN_BYTES_PER_SECOND = 512
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_STORED = web.AppKey("stored", dict)
_LISTENERS = web.AppKey("listeners", list)


@dataclass(frozen=True)
class ReceiveOptions:
    host: str
    port: int
    directory: str
    max_size: int = DEFAULT_MAX_SIZE


_OPTIONS = web.AppKey("options", ReceiveOptions)


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = (value or "").rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError([ConfigProblem("--listen", f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:8000")])
    return host, int(port)


def store_upload(directory: str, name: str, body: bytes) -> str:
    """Write ``body`` into ``directory`` under ``name`` (or a variant), atomically; the
    final name."""
    stem = name if _SAFE_NAME.fullmatch(name) else os.urandom(8).hex()
    temporary = os.path.join(directory, f".incoming-{os.urandom(8).hex()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        candidate = stem
        while True:
            try:
                os.link(temporary, os.path.join(directory, candidate))
                return candidate
            except FileExistsError:  # the same ID twice (a retried upload): keep both
                candidate = f"{stem}-{os.urandom(4).hex()}"
    finally:
        os.unlink(temporary)


class SlowClientGuard(ReleasingProtocol):
    """Closes a connection whose average inbound rate falls below ``MIN_BYTES_PER_SECOND``
    (checked from ``GRACE_SECONDS`` on, once per grace period)."""

    def __init__(self, inner: asyncio.Protocol, admission) -> None:
        super().__init__(inner, admission)
        self._received = 0
        self._started = 0.0
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        loop = asyncio.get_running_loop()
        self._transport, self._started = transport, loop.time()
        self._timer = loop.call_later(GRACE_SECONDS, self._check)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._received += len(data)
        super().data_received(data)

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        if self._received < MIN_BYTES_PER_SECOND * (loop.time() - self._started):
            self._timer = None
            if self._transport is not None:
                self._transport.close()
            return
        self._timer = loop.call_later(GRACE_SECONDS, self._check)

    def connection_lost(self, exc) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport = None
        super().connection_lost(exc)


async def _put(request: web.Request) -> web.Response:
    options: ReceiveOptions = request.app[_OPTIONS]
    if request.content_length is not None and request.content_length > options.max_size:
        return web.Response(status=413, text="too large\n")
    body = bytearray()
    try:
        async for chunk in request.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > options.max_size:
                return web.Response(status=413, text="too large\n")
    except ConnectionError:  # the client went away mid-upload: nothing to store or answer
        return web.Response(status=400, text="incomplete\n")
    if not body:
        return web.Response(status=400, text="empty\n")
    name = request.match_info["tail"].rstrip("/").rpartition("/")[2]
    try:
        await asyncio.to_thread(store_upload, options.directory, name, bytes(body))
    except OSError:
        return web.Response(status=503, text="cannot store now\n")  # the client retries later
    request.app[_STORED]["count"] += 1
    return web.Response(status=200, text="ok\n")


class _RedactAddresses(logging.Filter):
    """aiohttp names the peer in its own lines ("Error handling request from <ip>")."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_addresses(record.getMessage()), None
        return True


#: aiohttp's request handlers log here instead of ``aiohttp.server``: no client address.
_HTTP_LOG = logging.getLogger(__name__ + ".http")
_HTTP_LOG.addFilter(_RedactAddresses())


def make_app(options: ReceiveOptions) -> web.Application:
    app = web.Application(client_max_size=options.max_size + 1)
    app[_OPTIONS] = options
    app[_STORED] = {"count": 0}
    app[_LISTENERS] = []
    app.on_shutdown.append(_close_listeners)
    app.router.add_put("/{tail:.*}", _put)
    return app


async def _close_listeners(app: web.Application) -> None:
    for listener in app[_LISTENERS]:
        listener.close()
        await listener.wait_closed()


def _check_directory(directory: str) -> None:
    problem = None
    if not os.path.isdir(directory):
        problem = f"{directory} is not a directory (create it first)"
    elif not os.access(directory, os.W_OK | os.X_OK):
        problem = f"{directory} is not writable"
    if problem:
        raise ConfigError([ConfigProblem("--to", problem)])


async def start(options: ReceiveOptions) -> tuple[web.AppRunner, int]:
    _check_directory(options.directory)
    runner = web.AppRunner(make_app(options), access_log=None, handle_signals=False, logger=_HTTP_LOG)
    await runner.setup()
    # a public endpoint: connections are capped (total and per source, from RLIMIT_NOFILE) and
    # accept() backs off when descriptors run out, like the tunnel listeners
    # (and a connection too slow to be a real upload is closed: SlowClientGuard)
    server = runner.server
    assert server is not None  # set by setup()
    listener = GatedServer(lambda admission: SlowClientGuard(server(), admission), AcceptGate(), "HTTP")
    try:
        await listener.start(options.host, options.port)
    except OSError as exc:
        await runner.cleanup()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno == errno.EACCES and options.port < 1024:
            reason += " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        raise ConfigError([ConfigProblem("--listen", f"cannot listen on {options.host}:{options.port}: "
                                                     f"{reason}")]) from None
    runner.app[_LISTENERS].append(listener)
    port = listener.sockets[0].getsockname()[1]
    return runner, port


def start_line(options: ReceiveOptions, port: int) -> str:
    host = f"[{options.host}]" if ":" in options.host else options.host
    return (f"onehop feedback receive: accepting uploads (HTTP PUT, up to {options.max_size} bytes each) on "
            f"http://{host}:{port}/ into {options.directory}; read them with `onehop feedback collect --from "
            f"{options.directory}`; clients upload here once `onehop network settings set feedback-upload-url "
            f"http://{host}:{port}/` is set and their build is made again; SIGTERM stops it")


async def serve_until_signalled(options: ReceiveOptions, on_started: Callable[[int], None] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; the number of uploads stored."""
    runner, port = await start(options)
    if on_started is not None:
        on_started(port)
    stop = stop_event()
    try:
        await stop.wait()
    finally:
        count = runner.app[_STORED]["count"]
        await runner.cleanup()
    return count
