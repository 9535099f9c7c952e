"""Running a tunnel server: listeners, SSH options, shared state, clean shutdown.

One OSSH listener serves OSSH with and without prefix on the same port (as Psiphon
does); an optional plain SSH listener serves the SSH protocol. Both hand accepted
streams to asyncssh server connections whose decisions come from ``session``.
Shared state: the event log, GeoIP, traffic rules and psinet snapshot; the files behind
them are checked for changes every ``reload_interval`` seconds and reloaded in place.
Sessions and the API handler reach that state through the seams in ``seams``
(``SessionHost``, ``APIHost``), which ``TunnelServer`` answers.
asyncssh's own logger is kept at WARNING: at INFO it writes addresses.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import socket
from typing import TYPE_CHECKING, TextIO
from collections.abc import Callable

import asyncssh

from ..core.ossh import ReplayHistory, SeedHistory
from ..core.prng import SeededPRNG, salted_seed
from ..errors import ConfigError, ConfigProblem, ProtocolError
from ..stopsignals import stop_event
from ..tunnel.algorithms import (COMPRESSION_ALGS, SERVER_ENCRYPTION_ALGS, SERVER_KEX_ALGS, SERVER_MAC_ALGS,
                                 openssh_version)
from ..tunnel.server import TunnelSSHServer
from .api import APIHandler
from .config import ServerConfig
from .connection import new_connection
from .discovery import ServerDiscovery
from ..net.keypool import KeyDeriver
from ..net.acceptgate import AcceptGate, Admission, GatedServer
from ..net.listener import OSSHListener
from .events import EventLog
from .geoip import GeoIPService
from .policy import ForwardPolicy
from .psinet import PsinetStore
from .session import ClientSession
from .sessions import SessionRegistry
from .trafficrules import TrafficRulesStore
from .udpgw import first_nameserver

if TYPE_CHECKING:
    from ..core.trafficrules import ClientFacts, EffectiveRules
    from .psinet import PsinetSnapshot
    from .seams import ServedClient

log = logging.getLogger(__name__)

SSH_WINDOW = 8 * 1024 * 1024
SSH_MAX_PACKET = 32768
#: Seconds between checks of the GeoIP and traffic rules files.
RELOAD_INTERVAL = 5.0


def server_version_for(keyword: str) -> str:
    """A stable OpenSSH-looking version derived from the obfuscation key (as Psiphon)."""
    seed = salted_seed(hashlib.sha256(keyword.encode()).digest(), "ssh-server-version")
    return openssh_version(SeededPRNG(seed))


def listen_problem(host: str, ports: dict[str, int], exc: OSError) -> str:
    """One line saying why the listeners could not start (asyncio's message repeats itself)."""
    where = ", ".join(f"{protocol} {host}:{port}" for protocol, port in ports.items())
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if exc.errno == errno.EACCES and min(ports.values()) < 1024:
        reason += " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    return f"cannot listen on {where}: {reason}"


class TunnelServer:
    """All listeners and shared state of one server process."""

    def __init__(self, config: ServerConfig, event_stream: TextIO | None = None) -> None:
        """``event_stream``: where events go when the config names no LogFilename."""
        self.config = config
        self.sessions = SessionRegistry()
        self.seed_history: ReplayHistory = SeedHistory()
        logging.getLogger("asyncssh").setLevel(max(logging.WARNING, logging.getLogger("asyncssh").level))
        self.events = EventLog(config.path(config.log_filename) if config.log_filename else None,
                               host_id=config.host_id, stream=event_stream)
        self.geoip = GeoIPService([config.path(p) for p in config.geoip_database_filenames],
                                  self.events.geoip_database_error)
        self.traffic_rules = TrafficRulesStore(
            config.path(config.traffic_rules_filename) if config.traffic_rules_filename else None,
            self.events.traffic_rules_error)
        self.dns_resolver = config.dns_resolver_address or first_nameserver()
        self.reload_interval = RELOAD_INTERVAL
        self._reloader: asyncio.Task | None = None
        self.psinet = PsinetStore(config.path(config.psinet_database_filename)
                                  if config.psinet_database_filename else None)
        ports = config.tunnel_protocol_ports
        self.forward_policy = ForwardPolicy(
            allow_bogons=config.allow_bogons,
            allow_ports=frozenset(config.allow_tcp_ports),
            disallow_ports=frozenset(config.disallow_tcp_ports),
            own_endpoints=frozenset((ip, p) for p in ports.values()
                                    for ip in (config.server_ip_address, config.listen_ip_address)),
        )
        self.clients: set[ServedClient] = set()
        self.api = APIHandler(self, self.events)
        self.discovery = ServerDiscovery(config.discovery_value_hmac_key)
        self._servers: list[GatedServer] = []
        #: protocol -> a socket already listening (a worker's, bound by its supervisor)
        self.listen_sockets: dict[str, socket.socket] = {}
        self._ossh: OSSHListener | None = None
        self.accept_gate: AcceptGate | None = None
        self._key_deriver: KeyDeriver | None = None
        self._stopped = asyncio.Event()
        self._options = self._ssh_options()

    # -- services the sessions and API handlers use (seams.SessionHost, seams.APIHost) -----

    def client_region(self, client_ip: str) -> str:
        return self.geoip.lookup(client_ip).region

    @property
    def ssh_credentials(self) -> tuple[str, str]:
        return self.config.ssh_username, self.config.ssh_password

    def select_rules(self, facts: ClientFacts) -> EffectiveRules:
        return self.traffic_rules.rules.select(facts)

    def register_session(self, session_id: str, close: Callable[[], None]) -> None:
        self.sessions.register(session_id, close)

    def unregister_session(self, session_id: str, close: Callable[[], None]) -> None:
        self.sessions.unregister(session_id, close)

    def client_opened(self, client: ServedClient) -> None:
        self.clients.add(client)

    def client_closed(self, client: ServedClient) -> None:
        self.clients.discard(client)

    @property
    def psinet_snapshot(self) -> PsinetSnapshot:
        return self.psinet.snapshot

    def own_server_entry(self, tag: str) -> str | None:
        return self.config.own_encoded_server_entries.get(tag)

    def is_udpgw_address(self, host: str, port: int) -> bool:
        address = self.config.udpgw_server_address
        return address is not None and port == address[1] and host.strip("[]") == address[0]

    def irregular(self, listener: str, reason: str, peer_ip: str) -> None:
        """An irregular connection: logged with the source's GeoIP names, never its address."""
        self.events.irregular_tunnel(listener, reason, **self.geoip.lookup(peer_ip).log_fields())

    def reload_files(self) -> None:
        """Reload changed GeoIP databases and traffic rules (re-applied to every client)."""
        self.geoip.reload_if_changed()
        if self.traffic_rules.reload_if_changed():
            for client in list(self.clients):
                client.reselect_rules()

    async def _reload_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval)
            try:
                self.reload_files()
            except Exception:  # a reload bug must not stop later reloads; it is logged
                log.exception("reloading the server's files failed")

    def discover(self, client_ip: str) -> list[str]:
        return self.discovery.select(self.psinet.snapshot, client_ip)

    def invalid_server_entry_tags(self, tags: list) -> list[str]:
        valid = self.psinet.snapshot.valid_server_entry_tags
        if not valid:
            return []  # no list exported: every tag counts as valid
        return [t for t in tags if isinstance(t, str) and t not in valid]

    def _ssh_options(self) -> asyncssh.SSHServerConnectionOptions:
        cfg = self.config
        return asyncssh.SSHServerConnectionOptions(
            server_host_keys=[cfg.host_key()],
            server_factory=lambda: TunnelSSHServer(lambda conn: ClientSession(self, conn)),
            server_version=cfg.ssh_server_version or server_version_for(cfg.obfuscated_ssh_key),
            login_timeout=cfg.handshake_timeout, config=None,
            encryption_algs=list(SERVER_ENCRYPTION_ALGS), mac_algs=list(SERVER_MAC_ALGS),
            kex_algs=list(SERVER_KEX_ALGS), compression_algs=list(COMPRESSION_ALGS),
            allow_pty=False, agent_forwarding=False, x11_forwarding=False,
            keepalive_interval=120, keepalive_count_max=3,
            window=SSH_WINDOW, max_pktsize=SSH_MAX_PACKET,
        )

    def _ossh_connection(self, event, transport):
        return new_connection(self._options, tunnel_protocol="OSSH", ossh_prefix=event.prefix_spec_name,
                              upstream_ossh_padding=event.padding_length)

    def _irregular_ossh(self, error: ProtocolError, peer_ip: str) -> None:
        self.irregular("OSSH", error.reason, peer_ip)

    async def start(self) -> None:
        cfg = self.config
        host = cfg.listen_ip_address
        ports = cfg.tunnel_protocol_ports
        try:
            await self._listen(host, ports)
        except OSError as exc:
            await self.stop()
            raise ConfigError([ConfigProblem("TunnelProtocolPorts", listen_problem(host, ports, exc))]) from None
        self._reloader = asyncio.get_running_loop().create_task(self._reload_periodically())
        log.info("serving %s on %s", ", ".join(f"{p}:{n}" for p, n in ports.items()), host)

    def _ssh_connection(self, admission: Admission):
        conn = new_connection(self._options, tunnel_protocol="SSH")
        conn.admission = admission  # released once authenticated, or when the connection is lost
        return conn

    async def _listen(self, host: str, ports: dict[str, int]) -> None:
        cfg = self.config
        # one cap on connections still in their handshake, shared by both listeners
        self.accept_gate = AcceptGate(cfg.max_concurrent_handshakes or None,
                                      cfg.max_concurrent_handshakes_per_source or None)
        if "OSSH" in ports:
            if cfg.ossh_key_workers:
                self._key_deriver = KeyDeriver(cfg.ossh_key_workers)
                await self._key_deriver.start()
            self._ossh = OSSHListener(cfg.obfuscated_ssh_key, self._ossh_connection,
                                      history=self.seed_history,
                                      handshake_timeout=cfg.handshake_timeout,
                                      prefix_specs=cfg.ossh_prefix_specs,
                                      key_deriver=self._key_deriver,
                                      gate=self.accept_gate,
                                      on_irregular=self._irregular_ossh)
            self._servers.append(await self._ossh.start(host, ports["OSSH"], self.listen_sockets.get("OSSH")))
        if "SSH" in ports:
            self._servers.append(await GatedServer(self._ssh_connection, self.accept_gate, "SSH")
                                 .start(host, ports["SSH"], backlog=1024, sock=self.listen_sockets.get("SSH")))

    def start_line(self) -> str:
        """One line for the operator's terminal: what listens where, and where events go."""
        cfg, bound = self.config, self.bound_ports()
        names = {"OSSH": "OSSH (with and without prefix)", "SSH": "SSH"}
        listening = ", ".join(f"{names[p]} on {cfg.listen_ip_address}:{port}" for p, port in bound.items())
        events = (self.events.path if self.events.path else
                  "stderr (JSON lines)" if self.events.stream is not None else "nowhere (no LogFilename)")
        return f"onehop server: serving {listening}; events to {events}; SIGTERM stops it"

    def bound_ports(self) -> dict[str, int]:
        names = [p for p in ("OSSH", "SSH") if p in self.config.tunnel_protocol_ports]
        return {name: server.sockets[0].getsockname()[1] for name, server in zip(names, self._servers)}

    async def stop(self) -> None:
        if self._reloader is not None:
            self._reloader.cancel()
        for server in self._servers:
            server.close()
        if self._ossh is not None:
            self._ossh.close()
        for client in list(self.clients):
            client.close()
        for server in self._servers:
            await server.wait_closed()
        if self._key_deriver is not None:
            await self._key_deriver.close()
        self.geoip.close()
        self.events.close()
        self._stopped.set()

    async def serve_until_signalled(self, on_started: Callable[[], None] | None = None) -> None:
        """Start, then stop cleanly on SIGTERM or SIGINT; SIGHUP reloads changed files now."""
        await self.start()
        if on_started is not None:
            on_started()
        await stop_event(on_reload=self.reload_files).wait()
        await self.stop()
