"""Running a scenario: its servers, and one onehop client per row behind its own censor.

A row is one (censor, protocol) measurement: a fresh censor instance, a fresh client
limited to that protocol, a time budget for the first tunnel, then (once an active
prober has judged every server it saw) a page fetched through the client's SOCKS
proxy. ``observed`` is ``pass`` only when the page arrived intact. Rows of a scenario
run concurrently against the same servers; their censors share nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, UTC
from collections.abc import Awaitable, Callable

from ..client.candidates import MemoryStore
from ..client.config import ClientConfig
from ..client.controller import Controller
from ..client.notices import Notices
from ..core.serverentry import ServerEntry, decode_server_entry
from ..demo import fetch_via_socks, serve_page
from ..errors import OnehopError
from ..server.config import parse_server_config
from ..server.generate import generate_server
from ..server.service import TunnelServer
from .flows import Censor, Chain, FlowTracker
from .prober import ActiveProber
from .probing import ProberDriver
from .report import Observation, row_notes
from .topology import Topology

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabSettings:
    connect_timeout: float = 3.0        # ClientConfig.tunnel_connect_timeout
    establish_pause: float = 0.2
    establish_deadline: float = 8.0     # no tunnel by then: blocked
    fetch_timeout: float = 8.0
    page_bytes: int = 256 * 1024
    server_handshake_ms: int = 1500     # SSHHandshakeTimeoutMilliseconds of every server
    probe_window: float = 3.0           # how long a probe waits for a reaction
    probe_settle: float = 10.0


@dataclass
class LabServer:
    number: int
    server: TunnelServer
    entry: ServerEntry
    config: dict


def free_port_in(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def discovery_psinet(encoded: list[str]) -> dict:
    """A psinet snapshot whose discovery hands out ``encoded`` (valid for a day around now)."""
    now = datetime.now(UTC)
    window = [(now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
              (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")]
    return {"discovery_servers": [{"discovery_date_range": window, "encoded_server_entry": e} for e in encoded]}


class Lab:
    """One scenario's world: a topology, a web page on the 'internet', tunnel servers."""

    def __init__(self, topology: Topology, settings: LabSettings, workdir: str) -> None:
        self.topology = topology
        self.settings = settings
        self.workdir = workdir
        self.servers: list[LabServer] = []
        self.page = os.urandom(settings.page_bytes)
        self.page_port = 0
        self._closers: list[Callable[[], Awaitable[None]]] = []

    async def start(self) -> None:
        page_server, self.page_port = await serve_page(self.page)
        self._closers.append(_server_closer(page_server))

    async def add_server(self, *, ossh: bool = True, ssh: bool = True,
                         psinet: dict | None = None, number: int | None = None) -> LabServer:
        number = number or len(self.servers) + 1
        ip = self.topology.server_ip(number)
        with self.topology.server_context():
            ossh_port = free_port_in(ip) if ossh else None
            ssh_port = free_port_in(ip) if ssh else None
        generated = generate_server(ip, ossh_port=ossh_port, ssh_port=ssh_port, allow_bogons=True)
        # Behind the lab's relay (or one censor namespace) every client, prober included, is
        # one source: the per-source handshake cap would judge them all as one.
        config = dict(generated.config, SSHHandshakeTimeoutMilliseconds=self.settings.server_handshake_ms,
                      MaxConcurrentSSHHandshakesPerClient=1024)
        base = os.path.join(self.workdir, f"server-{number}")
        os.makedirs(base, exist_ok=True)
        if psinet is not None:
            with open(os.path.join(base, "psinet.json"), "w", encoding="utf-8") as f:
                json.dump(psinet, f)
            config["PsinetDatabaseFilename"] = "psinet.json"
        server = TunnelServer(parse_server_config(config, f"lab server {number}", base))
        with self.topology.server_context():
            await server.start()  # nothing else runs during setup: no other socket is created here
        self._closers.append(server.stop)
        running = LabServer(number, server, decode_server_entry(generated.encoded_entry), config)
        self.servers.append(running)
        return running

    async def serve_files(self, number: int, files: dict[str, bytes]) -> str:
        """A plain HTTP server in the servers' network (a CDN); returns its base URL."""
        from aiohttp import web
        app = web.Application()
        for path, body in files.items():
            app.router.add_get(path, _static(body))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        ip = self.topology.server_ip(number)
        with self.topology.server_context():
            sock = socket.socket()
        sock.bind((ip, 0))
        sock.listen(64)
        sock.setblocking(False)
        await web.SockSite(runner, sock).start()
        self._closers.append(runner.cleanup)
        return f"http://{ip}:{sock.getsockname()[1]}"

    def describe(self, entry: ServerEntry) -> str:
        number = next((s.number for s in self.servers if s.entry.ip_address == entry.ip_address), None)
        source = {"DISCOVERY": "discovered", "REMOTE": "remote list"}.get(entry.local_source, "embedded")
        return f"server {number} ({source})"

    async def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                await closer()
            except Exception:  # one failed stop must not leave the others running
                log.exception("lab cleanup")
        self._closers.clear()


def _server_closer(server: asyncio.AbstractServer):
    async def close() -> None:
        server.close()
        await server.wait_closed()
    return close


def _static(body: bytes):
    from aiohttp import web
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'

    async def handler(request):
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, headers={"ETag": etag}, content_type="application/octet-stream")
    return handler


@dataclass(frozen=True)
class Row:
    censor: str                                   # label in reports
    protocol: str                                 # the client's protocol: OSSH, OSSH-PREFIX or SSH
    expected: str                                 # pass or blocked
    make_censor: Callable[[], Censor]
    entries: tuple[ServerEntry, ...]
    split_delay: float = 0.0                      # ClientConfig.ossh_prefix_split_delay
    prepare: Callable[[RowRun], Awaitable[None]] | None = None
    make_controller: Callable[[RowRun], Controller] | None = None

    @property
    def label(self) -> str:
        """The protocol as reported: ``+split`` marks a prefix split with a delay."""
        return self.protocol + ("+split" if self.split_delay else "")


def find_prober(censor: Censor) -> ActiveProber | None:
    parts = censor.censors if isinstance(censor, Chain) else (censor,)
    return next((c for c in parts if isinstance(c, ActiveProber)), None)


@dataclass
class RowRun:
    """The live state of one row: its censor, tracker, prober and client store."""

    lab: Lab
    row: Row
    censor: Censor
    tracker: FlowTracker
    workdir: str
    store: MemoryStore
    driver: ProberDriver | None = None
    notices: list[dict] = field(default_factory=list)
    via: str = ""                                 # the server the measured tunnel used
    closers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def create(cls, lab: Lab, row: Row, index: int) -> RowRun:
        censor = row.make_censor()
        workdir = os.path.join(lab.workdir, f"row-{index}")
        run = cls(lab, row, censor, FlowTracker(censor), workdir, MemoryStore(row.entries))
        prober = find_prober(censor)
        if prober is not None:
            run.driver = ProberDriver(prober, lab.topology.censor_socket, window=lab.settings.probe_window)
            run.driver.start()
        return run

    def config(self, phase: str) -> ClientConfig:
        s = self.lab.settings
        return ClientConfig(data_dir=os.path.join(self.workdir, phase), socks_port=0, http_port=0,
                            protocols=(self.row.protocol,), tunnel_connect_timeout=s.connect_timeout,
                            establish_pause=s.establish_pause, ossh_prefix_split_delay=self.row.split_delay)

    def opener(self):
        return self.lab.topology.opener(self.tracker, self.lab.settings.connect_timeout)

    def controller(self, phase: str = "client") -> Controller:
        if self.row.make_controller is not None:
            return self.row.make_controller(self)
        notices = Notices(None)
        notices.subscribe(self.notices.append)
        return Controller(self.config(phase), self.store, notices, open_socket=self.opener())

    async def connect(self, controller: Controller, deadline: float) -> tuple[asyncio.Task, float | None]:
        """Start ``controller``; the seconds to its first tunnel, None if none by ``deadline``."""
        started = time.monotonic()
        task = asyncio.get_running_loop().create_task(controller.run())
        while controller.active is None and time.monotonic() - started < deadline and not task.done():
            await asyncio.sleep(0.02)
        return task, (time.monotonic() - started if controller.active is not None else None)

    async def close(self) -> None:
        if self.driver is not None:
            await self.driver.close()
        for closer in self.closers:
            closer()


async def stop_controller(controller: Controller, task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await controller.close()
    # Controller.close() leaves the per-tunnel tasks (connected request, status loop)
    # running; they would outlive the row and its datastore.
    leftovers = list(getattr(controller, "_tunnel_tasks", ()))
    for leftover in leftovers:
        leftover.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


async def measure(run: RowRun) -> tuple[float | None, int]:
    """(seconds to the first tunnel or None, page bytes fetched intact through it)."""
    settings = run.lab.settings
    controller = run.controller()
    task, seconds = await run.connect(controller, settings.establish_deadline)
    try:
        if seconds is None:
            return None, 0
        run.via = run.lab.describe(controller.active.entry) if controller.active is not None else ""
        if run.driver is not None:
            await run.driver.settle(settings.probe_settle)
        assert controller.socks_port is not None  # connected, so the proxies are listening
        try:
            body = await asyncio.wait_for(
                fetch_via_socks(controller.socks_port, "127.0.0.1", run.lab.page_port), settings.fetch_timeout)
        except (TimeoutError, OnehopError, OSError, EOFError) as exc:
            log.info("row %s/%s: fetch failed: %s", run.row.censor, run.row.label, exc)
            return seconds, 0
        return seconds, len(body) if body == run.lab.page else 0
    finally:
        await stop_controller(controller, task)


async def run_row(lab: Lab, scenario: str, row: Row, index: int) -> tuple[Observation, RowRun]:
    run = RowRun.create(lab, row, index)
    try:
        if row.prepare is not None:
            await row.prepare(run)
        seconds, fetched = await measure(run)
    finally:
        await run.close()
    observed = "pass" if fetched else "blocked"
    return Observation(scenario, row.censor, row.label, row.expected, observed,
                       None if seconds is None else round(seconds, 3), fetched, row_notes(run)), run


async def run_rows_detailed(lab: Lab, scenario: str, rows: list[Row]) -> list[tuple[Observation, RowRun]]:
    """Every row at once; each observation with the row's run (censor state, flows)."""
    return list(await asyncio.gather(*(run_row(lab, scenario, row, i) for i, row in enumerate(rows))))


async def run_rows(lab: Lab, scenario: str, rows: list[Row]) -> list[Observation]:
    return [observation for observation, _ in await run_rows_detailed(lab, scenario, rows)]


def make_workdir(parent: str | None = None) -> str:
    return tempfile.mkdtemp(prefix="onehop-lab-", dir=parent)


def remove_workdir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
