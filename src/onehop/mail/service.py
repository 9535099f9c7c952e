"""``onehop mail run``: the responder process, wiring the parts together.

Start: templates and the configuration are loaded and checked (a broken configuration
stops the start with every problem listed), attachments are snapshotted into the state
directory, replies queued before a restart are picked up by the sender, then the SMTP
listener opens. While running, the configuration file and its attachments are polled
(and reloaded at once on SIGHUP); a broken new version is logged and ignored, the last
good one stays in use. Stop (SIGTERM/SIGINT): stop accepting, let requests in progress
finish, let the sender finish the reply in hand, flush statistics, close the store.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
import traceback
import weakref
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

from ..errors import ConfigError, ConfigProblem
from ..net.acceptgate import AcceptGate, Admission, GatedServer
from ..stopsignals import stop_event
from . import dkimtools
from .blobs import Blobs
from .config import ActiveConfig, load_responder_config
from .handler import RequestHandler, ResponderSMTP
from .options import RunOptions, tls_context
from .renderer import Renderer
from .sender import Sender
from .store import AsyncStore, Store, StoreError, load_or_create_key
from .templates import load_templates

log = logging.getLogger("onehop.mail")
STOP_GRACE = 5.0


def quiet_library_loggers() -> None:
    """aiosmtpd logs client IPs and envelope addresses at INFO/DEBUG: never let it."""
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)


class Responder:
    def __init__(self, options: RunOptions, *, dnsfunc: Callable | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.clock = clock
        self.templates = load_templates(options.templates_dir)
        self.dnsfunc = dnsfunc
        self.port: int | None = None
        self._active: ActiveConfig | None = None
        self._bad_signature: tuple | None = None
        self._server: GatedServer | None = None
        self._connections: weakref.WeakSet = weakref.WeakSet()
        self._tasks: list[asyncio.Task] = []
        self._reload_now = asyncio.Event()
        self.stopped = False

    @property
    def active(self) -> ActiveConfig:
        assert self._active is not None, "not started"
        return self._active

    async def start(self) -> None:
        quiet_library_loggers()
        state_dir = self.options.state_dir
        self.store = AsyncStore(Store(state_dir))
        try:
            self.key = load_or_create_key(state_dir)
            self.blobs = Blobs(state_dir)
            self._active = await self.store.run(self._load)
            await self.store.run(self._collect_blobs)
            pending = await self.store.run(self.store.store.pending)
            await self._start_parts(pending)
        except BaseException:
            if hasattr(self, "renderer"):
                await self.renderer.close()
            await self.store.close()
            raise

    async def _start_parts(self, pending: int) -> None:
        o = self.options
        self.renderer = Renderer(o, self.templates)
        await self.renderer.start()
        self.sender = Sender(options=o, renderer=self.renderer, store=self.store, clock=self.clock)
        verifier = functools.partial(dkimtools.verify_aligned, dnsfunc=self.dnsfunc, timeout=o.dns_timeout)
        self.handler = RequestHandler(options=o, templates=self.templates, store=self.store, blobs=self.blobs,
                                      key=self.key, active=lambda: self.active, on_queued=self.sender.wake,
                                      verifier=verifier, clock=self.clock)
        self._tls = tls_context(o.tls_cert, o.tls_key) if o.tls_cert and o.tls_key else None
        try:
            # capped like the tunnel listeners: no descriptor exhaustion, no traceback per failed accept()
            self._server = await GatedServer(self._gated_protocol, AcceptGate(), "SMTP").start(*o.listen)
        except OSError as exc:
            raise ConfigError([ConfigProblem("--listen", f"cannot listen on {o.listen[0]}:{o.listen[1]}: "
                                                         f"{exc.strerror or exc}")]) from None
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks = [asyncio.create_task(self.sender.run(), name="mail-sender"),
                       asyncio.create_task(self._watch(), name="mail-config-watch")]
        for task in self._tasks:
            task.add_done_callback(_report_crash)
        self._pending_at_start = pending

    def start_line(self, events: str = "stderr") -> str:
        """One line for the operator's terminal: what listens where, the relay, the state."""
        o = self.options
        extras = [f"DKIM-signed as {o.dkim.selector}._domainkey.{o.dkim.domain}" if o.dkim else "unsigned",
                  ("STARTTLS required" if o.require_tls else "STARTTLS offered") if self._tls else "no STARTTLS"]
        return (f"onehop mail: answering {len(self.active.config.campaigns)} addresses on "
                f"{o.listen[0]}:{self.port} ({', '.join(extras)}); replies through the relay "
                f"{o.relay[0]}:{o.relay[1]} ({self._pending_at_start} replies queued); state in {o.state_dir}; "
                f"events to {events}; SIGHUP reloads {o.config_path}, SIGTERM stops it")

    def _gated_protocol(self, admission: Admission) -> ResponderSMTP:
        smtp = self._protocol()
        smtp.admission = admission
        return smtp

    def _protocol(self) -> ResponderSMTP:
        o = self.options
        smtp = ResponderSMTP(self.handler, data_size_limit=o.max_message_size, enable_SMTPUTF8=False,
                             decode_data=False, hostname=o.hostname, ident="onehop mail responder",
                             timeout=o.smtp_timeout, tls_context=self._tls,
                             require_starttls=o.require_tls and self._tls is not None)
        self._connections.add(smtp)
        return smtp

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + STOP_GRACE
        while getattr(self, "handler", None) and self.handler.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for smtp in list(self._connections):
            if smtp.transport is not None:
                smtp.transport.close()
        if hasattr(self, "sender"):
            self.sender.stop()
        await self._end_tasks(max(0.1, deadline - time.monotonic()))
        if hasattr(self, "sender"):
            try:
                await self.sender.flush()
            except StoreError as exc:
                log.error("final housekeeping failed: %s", exc)
        if hasattr(self, "renderer"):
            await self.renderer.close()
        await self.store.close()

    async def _end_tasks(self, grace: float) -> None:
        sender_task = self._tasks[0] if self._tasks else None
        if sender_task is not None:
            await asyncio.wait({sender_task}, timeout=grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def serve_until_signalled(self, on_started: Callable[[], None] | None = None) -> None:
        await self.start()
        if on_started is not None:
            on_started()
        stop = stop_event(on_reload=self._reload_now.set)
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({waiter, *self._tasks}, return_when=asyncio.FIRST_COMPLETED)
            failed = [exc for t in self._tasks if t.done() and not t.cancelled() and (exc := t.exception())]
            if failed:
                raise failed[0]
        finally:
            waiter.cancel()
            await self.stop()

    # -- the configuration ------------------------------------------------------------

    def _load(self) -> ActiveConfig:
        """On the store thread: load, validate and snapshot the attachments."""
        path = self.options.config_path
        config_stat = _stat(path)
        config = load_responder_config(path)
        blobs, stats = {}, []
        for address, campaign in config.campaigns.items():
            if campaign.attachment is not None:
                stats.append(_stat(campaign.attachment.path))
                blobs[address] = self.blobs.snapshot(campaign.attachment.path)
        return ActiveConfig(config, MappingProxyType(blobs), (config_stat, *stats))

    def _signature(self) -> tuple:
        config = self.active.config
        attachments = [c.attachment.path for c in config.campaigns.values() if c.attachment is not None]
        return (_stat(self.options.config_path), *(_stat(p) for p in attachments))

    def _collect_blobs(self) -> None:
        keep = set(self.active.blobs.values()) | self.store.store.blob_refs()
        self.blobs.gc(keep)

    async def _watch(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._reload_now.wait(), self.options.reload_interval)
            except TimeoutError:
                pass
            forced = self._reload_now.is_set()
            self._reload_now.clear()
            signature = await asyncio.to_thread(self._signature)
            if not forced and signature in (self.active.signature, self._bad_signature):
                continue
            await self._reload(signature)

    async def _reload(self, signature: tuple) -> None:
        path = self.options.config_path
        try:
            new = await self.store.run(self._load)
        except (ConfigError, StoreError) as exc:
            self._bad_signature = signature
            log.error("%s changed but cannot be used; keeping the last good configuration (%d addresses): %s",
                      path, len(self.active.config.campaigns), exc)
            return
        self._active, self._bad_signature = new, None
        await self.store.run(self._collect_blobs)
        log.info("reloaded %s: %d addresses", path, len(new.config.campaigns))


def _report_crash(task: asyncio.Task[object]) -> None:
    """The type and where only: an exception's text could quote a requester's address."""
    exc = None if task.cancelled() else task.exception()
    if exc is not None:
        where = "".join(traceback.format_tb(exc.__traceback__)[-3:])
        log.critical("%s stopped by %s (queued replies stay queued for the next start) at\n%s",
                     task.get_name(), type(exc).__name__, where)


def _stat(path: Path) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return (str(path), None)
    return (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
