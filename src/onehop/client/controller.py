"""The client controller: establish, activate, operate, and re-establish when lost.

It owns the local proxies (which keep listening while tunnels come and go), runs
establishment rounds until a tunnel is up, emits Psiphon's notices, makes the
connected request, and serves channel opens for the proxies, making requests that
arrive while no tunnel is up wait a bounded time for the next one.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import random
import webbrowser
from collections.abc import Callable

import asyncssh

from ..core.serverentry import ServerEntry, decode_server_list
from ..core.urls import safe_link
from ..errors import OnehopError, TunnelError, UpstreamProxyError
from ..net.dial import socket_opener
from . import notices as N
from ..tunnel.relay import ByteCounter
from .api_calls import base_params, connected_request
from .candidates import CandidateSource, available_regions, order_candidates, usable
from .config import ClientConfig
from .dialer import EstablishedTunnel, dial
from .establish import EstablishmentRound
from .http_proxy import HttpProxyConnection
from .local_proxy import AcceptErrors, ConnectionLimits
from .notices import Notices
from .ports import WholeDeviceMode
from .socks_proxy import SocksConnection
from .split_tunnel import Untunnelled, is_split_tunnel
from .status import StatusStore, status_loop
from .tunnel_socket import tunnel_socket_opener
from .upgrade_hook import upload_feedback_leftovers

log = logging.getLogger(__name__)


def looks_private(host: str) -> bool:
    """A loopback, private or otherwise non-global destination (a server refuses these
    without AllowBogons)."""
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_global
    except ValueError:
        return False

CHANNEL_OPEN_TIMEOUT = 10.0


class Controller:
    def __init__(self, config: ClientConfig, store: CandidateSource, notices: Notices, *,
                 open_socket: Callable | None = None, rng: random.Random | None = None,
                 remote_lists=None) -> None:
        self.config = config
        self.store = store
        self.notices = notices
        self.session_id = os.urandom(16).hex()
        self.active: EstablishedTunnel | None = None
        self._ready = asyncio.Event()
        self._rng = rng or random.Random()
        self._open_socket = open_socket or socket_opener(config.upstream_proxy, config.tunnel_connect_timeout)
        self.remote_lists = remote_lists
        self._tunnel_tasks: set[asyncio.Task] = set()
        self.byte_counter = ByteCounter()
        self._proxy_tasks: set[asyncio.Task] = set()
        self._proxy_limits = ConnectionLimits(config.local_proxy_request_timeout, config.local_proxy_max_connections)
        self._previous_handler: Callable | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self.socks_port: int | None = None
        self.http_port: int | None = None
        self.tunnels_established = 0
        self.on_lost_tunnel: Callable[[], None] | None = None
        self.whole_device: WholeDeviceMode | None = None  # a wholedevice.WholeDevice in --whole-device mode
        self.untunnelled = Untunnelled(self._open_socket, notices)  # split tunnelling
        self._said_no_candidates: tuple[str, ...] | None = None
        self._said_refused: set[tuple[str, int]] = set()
        self._wanted = asyncio.Event()  # connect() / disconnect(): whether to keep a tunnel up
        self._wanted.set()
        self._session: asyncio.Task | None = None

    def outbound_opener(self):
        """How to reach the internet now: through the tunnel when one is up."""
        return tunnel_socket_opener(self) if self.active is not None else self._open_socket

    # -- local proxies ----------------------------------------------------------------

    async def start_proxies(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        self._previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(AcceptErrors(self._previous_handler, self.notices.alert))
        for kind, port, factory, notice in (
                ("SOCKS", cfg.socks_port, SocksConnection, N.LISTENING_SOCKS_PROXY_PORT),
                ("HTTP", cfg.http_port, HttpProxyConnection, N.LISTENING_HTTP_PROXY_PORT)):
            try:
                connection = functools.partial(factory, self, self._proxy_tasks, self._proxy_limits)
                server = await loop.create_server(connection, cfg.listen_interface, port, reuse_address=True)
            except OSError as exc:
                flag = "--socks-port" if kind == "SOCKS" else "--http-port"
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise TunnelError("local-proxy", f"cannot listen for {kind} on {cfg.listen_interface}:{port}: "
                                  f"{reason} (choose another port with {flag} N, or 0 for any free port)") from None
            bound = server.sockets[0].getsockname()[1]
            self._servers.append(server)
            setattr(self, "socks_port" if kind == "SOCKS" else "http_port", bound)
            self.notices.emit(notice, port=bound)

    async def close(self) -> None:
        if self._session is not None:
            self._session.cancel()
            await asyncio.gather(self._session, return_exceptions=True)
        for server in self._servers:
            server.close()
        tasks = [*self._proxy_tasks, *self._tunnel_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.active is not None:
            self.active.client.close()
        for server in self._servers:
            await server.wait_closed()
        if self._servers:
            asyncio.get_running_loop().set_exception_handler(self._previous_handler)

    # -- the channel opener the proxies use ----------------------------------------------

    async def open_channel(self, session_factory, host: str, port: int):
        try:
            await asyncio.wait_for(self._ready.wait(), self.config.pending_request_wait)
        except TimeoutError:
            raise TunnelError("no-tunnel", "no tunnel became available in time") from None
        tunnel = self.active
        assert tunnel is not None
        try:
            return await asyncio.wait_for(tunnel.client.open_channel(session_factory, host, port),
                                          CHANNEL_OPEN_TIMEOUT)
        except asyncssh.ChannelOpenError as exc:
            if is_split_tunnel(exc):  # SplitTunnelOwnRegion / SplitTunnelRegions: go direct
                return await self.untunnelled.connect(session_factory, host, port)
            if exc.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED:
                self._forward_refused(host, port)
            raise

    def _forward_refused(self, host: str, port: int) -> None:
        """Once per destination: the application only sees a SOCKS error or a bare 403."""
        if (host, port) in self._said_refused:
            return
        self._said_refused.add((host, port))
        if looks_private(host):
            why = ("probably because it is a private or loopback address: a server forwards to those "
                   "only with AllowBogons (`onehop server generate --allow-bogons`)")
        else:
            why = "its forwarding policy (e.g. a port its traffic rules do not allow)"
        self.notices.alert(f"the server refused to forward to {host}:{port}: {why}",
                           destination=f"{host}:{port}", reason="administratively prohibited")

    # -- the main loop ------------------------------------------------------------------

    async def run(self, stop_after_first: bool = False) -> None:
        """Run until cancelled (or after the first tunnel when ``stop_after_first``)."""
        if not self._servers:
            await self.start_proxies()
        if stop_after_first:
            await self.activate(await self.establish())
            return
        while True:
            await self._wanted.wait()
            self._session = asyncio.get_running_loop().create_task(self._keep_tunnel())
            try:
                await self._session
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the client itself stops; else disconnect() or reconfigure() ended a session

    async def _keep_tunnel(self) -> None:
        """One session: establish, operate, re-establish when lost, until cancelled."""
        tunnel = None
        try:
            while True:
                tunnel = await self.establish()
                await self.activate(tunnel)
                await tunnel.client.wait_closed()
                self._tunnel_lost(tunnel)
                tunnel = None
        except asyncio.CancelledError:
            if tunnel is not None:
                self._drop_tunnel(tunnel)
            raise

    def _drop_tunnel(self, tunnel: EstablishedTunnel) -> None:
        """The session ended on purpose: close the tunnel without a "tunnel lost" alert."""
        was_active = self.active is tunnel
        self._ready.clear()
        self.active = None
        for task in list(self._tunnel_tasks):
            task.cancel()
        tunnel.client.close()
        if was_active:
            self.notices.emit(N.TUNNELS, count=0)

    # -- what a user interface changes (client/ui) ------------------------------------------

    @property
    def wanted(self) -> bool:
        """False after disconnect(): no tunnel is kept until connect()."""
        return self._wanted.is_set()

    def connect(self) -> None:
        if not self._wanted.is_set():
            self._wanted.set()
            self.notices.info("connecting: asked by the user")

    def disconnect(self) -> None:
        if self._wanted.is_set():
            self._wanted.clear()
            self._end_session()
            self.notices.info("disconnected: asked by the user")

    def reconfigure(self, config: ClientConfig, *, reconnect: bool = True) -> None:
        """New settings (region, protocols, upstream proxy, split tunnelling) take effect now:
        a new way out when the upstream proxy changed, and (``reconnect``) a new tunnel
        chosen with them."""
        old, self.config = self.config, config
        if (config.upstream_proxy, config.tunnel_connect_timeout) != (old.upstream_proxy,
                                                                      old.tunnel_connect_timeout):
            self._open_socket = socket_opener(config.upstream_proxy, config.tunnel_connect_timeout)
            self.untunnelled = Untunnelled(self._open_socket, self.notices)
        self._said_no_candidates = None
        if reconnect:
            self._end_session()

    def _end_session(self) -> None:
        if self._session is not None and not self._session.done():
            self._session.cancel()

    def _tunnel_lost(self, tunnel: EstablishedTunnel) -> None:
        self._ready.clear()
        self.active = None
        for task in list(self._tunnel_tasks):
            task.cancel()
        self.notices.emit(N.TUNNELS, count=0)
        self.notices.alert("tunnel lost, reconnecting", diagnosticID=tunnel.diagnostic_id)
        if self.on_lost_tunnel is not None:
            self.on_lost_tunnel()

    def candidates(self) -> list[ServerEntry]:
        cfg = self.config
        return [e for e in self.store.entries() if usable(e, cfg.egress_region, cfg.protocols)]

    async def establish(self) -> EstablishedTunnel:
        cfg = self.config
        while True:
            entries = self.store.entries()
            self.notices.emit(N.AVAILABLE_EGRESS_REGIONS, regions=available_regions(entries))
            candidates = self.candidates()
            self.notices.emit(N.CANDIDATE_SERVERS, count=len(candidates), region=cfg.egress_region)
            if not candidates:
                self._no_candidates(entries)
            else:
                self._said_no_candidates = None
                first, rest = order_candidates(candidates, self.store.affinity(), self._rng)
                round_ = EstablishmentRound(self._dial, self.notices, workers=cfg.connection_workers,
                                            protocols=cfg.protocols, affinity_grace=cfg.affinity_grace,
                                            rng=self._rng, on_failure=self._dial_failed)
                result = await round_.run(first, rest, cfg.establish_work_time)
                if result.tunnel is not None:
                    return result.tunnel
            await self.between_rounds()
            await asyncio.sleep(cfg.establish_pause * (0.9 + 0.2 * self._rng.random()))

    async def between_rounds(self) -> None:
        """After a round without a tunnel: fetch the remote server list if it is due."""
        if self.remote_lists is not None and self.remote_lists.due():
            await self.remote_lists.fetch(self._open_socket, tunneled=False)

    def _dial_failed(self, entry: ServerEntry, protocol: str, exc: BaseException) -> None:
        if isinstance(exc, UpstreamProxyError):
            self.notices.emit(N.UPSTREAM_PROXY_ERROR, message=str(exc))

    def _no_candidates(self, entries: list[ServerEntry]) -> None:
        """Said once, in words with the fix; the rounds then retry quietly (a remote list,
        discovery or a newly imported entry may still bring servers)."""
        region = self.config.egress_region
        said: tuple[str, ...]  # what was said, to say it once
        if region and entries:
            said, message = ("region", region), f"no servers in egress region {region}"
            data = {"availableRegions": available_regions(entries),
                    "hint": "choose one of availableRegions with --region, or leave --region out; "
                            "retrying quietly"}
        elif entries:
            said, message = ("protocols",), "no server entries offer the allowed protocols"
            data = {"protocols": list(self.config.protocols),
                    "hint": "allow more with --protocol (OSSH, OSSH-PREFIX, SSH); retrying quietly"}
        else:
            said, message, data = ("none",), "no server entries to try", {"hint": self._no_entries_hint()}
        if said != self._said_no_candidates:
            self._said_no_candidates = said
            self.notices.alert(message, **data)

    def _no_entries_hint(self) -> str:
        if self.remote_lists is not None:
            return ("waiting for the remote server list (RemoteServerListURLs); retrying quietly. "
                    "Or give a server with --target-server-entry HEX|@FILE or a list with --server-list FILE")
        return ("give a server with --target-server-entry HEX|@FILE (e.g. a server's server-entry.dat), "
                "a list with --server-list FILE, or RemoteServerListURLs with "
                "RemoteServerListSignaturePublicKey in --config FILE; retrying quietly")

    async def _dial(self, entry: ServerEntry, protocol: str, number: int) -> EstablishedTunnel:
        return await dial(entry, protocol, self.config, self.session_id, self._open_socket,
                          candidate_number=number, established_tunnels=self.tunnels_established)

    async def activate(self, tunnel: EstablishedTunnel) -> None:
        hs = tunnel.handshake
        self.active = tunnel
        self.tunnels_established += 1
        self.store.set_affinity(tunnel.entry.ip_address)
        n = self.notices
        n.emit(N.ACTIVE_TUNNEL, diagnosticID=tunnel.diagnostic_id, protocol=tunnel.protocol,
               region=tunnel.entry.region)
        n.emit(N.TUNNELS, count=1)
        if hs.client_region:
            n.emit(N.CLIENT_REGION, region=hs.client_region)
        if hs.server_timestamp:
            n.emit(N.SERVER_TIMESTAMP, timestamp=hs.server_timestamp)
        self._home_pages(hs.homepages)
        if hs.upgrade_client_version:
            n.emit(N.CLIENT_UPGRADE_AVAILABLE, version=hs.upgrade_client_version)
        if hs.encoded_server_list:
            self._import_discovered(hs.encoded_server_list, hs.server_timestamp)
        self._ready.set()
        self._background(self._after_activation(tunnel))

    def _home_pages(self, urls: tuple[str, ...]) -> None:
        """Announce (and maybe open) the server's home pages: http(s) only, nothing else."""
        safe = [url for url in urls if safe_link(url) is not None]
        if len(safe) < len(urls):
            self.notices.alert("ignored home page URLs from the server that are not plain http(s) links",
                               count=len(urls) - len(safe))
        for url in safe:
            self.notices.emit(N.HOMEPAGE, url=url)
        if safe and self.config.open_home_page:
            webbrowser.open(safe[0])

    def _background(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tunnel_tasks.add(task)
        task.add_done_callback(self._tunnel_tasks.discard)

    async def _after_activation(self, tunnel: EstablishedTunnel) -> None:
        self._background(upload_feedback_leftovers(self))  # feedback earlier runs could not send
        try:
            await connected_request(tunnel, self.config, self.store)
        except OnehopError as exc:
            self.notices.info("connected request failed", error=str(exc))
        except Exception as exc:  # a malformed answer must not take the tunnel down
            self.notices.info("unreadable connected response", error=str(exc))
        if self.remote_lists is not None and self.remote_lists.due():
            await self.remote_lists.fetch(tunnel_socket_opener(self), tunneled=True)
        if isinstance(self.store, StatusStore):
            await status_loop(tunnel, self.store, base_params(self.config), self._rng,
                              on_pruned=lambda n: self.notices.info("pruned server entries", count=n))

    def _import_discovered(self, encoded: tuple[str, ...], server_timestamp: str) -> None:
        entries, errors = decode_server_list("\n".join(encoded))
        stamp = (server_timestamp[:13] + ":00:00Z") if server_timestamp else ""
        entries = [e.with_local("DISCOVERY", stamp) if stamp else e for e in entries]
        imported = self.store.import_entries(entries, "DISCOVERY")
        if imported or errors:
            self.notices.info("discovered server entries", imported=imported, invalid=len(errors))
