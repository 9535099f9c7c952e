"""Running a tunnel server: listeners, SSH options, shared state, clean shutdown.

One OSSH listener serves OSSH with and without prefix on the same port (as Psiphon
does); an optional plain SSH listener serves the SSH protocol. Both hand accepted
streams to asyncssh server connections whose decisions come from ``session``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal

import asyncssh

from ..core.ossh import SeedHistory
from ..core.ossh.regen import generate
from ..core.prng import SeededPRNG, salted_seed
from ..errors import ProtocolError
from ..net.listener import OSSHListener
from ..tunnel.algorithms import COMPRESSION_ALGS, ENCRYPTION_ALGS, KEX_ALGS, MAC_ALGS
from ..tunnel.server import TunnelSSHServer, new_server_connection
from .api import APIHandler
from .config import ServerConfig
from .discovery import ServerDiscovery
from .events import EventLog
from .policy import ForwardPolicy
from .psinet import PsinetStore
from .session import ClientSession
from .sessions import SessionRegistry

log = logging.getLogger(__name__)

SSH_WINDOW = 8 * 1024 * 1024
SSH_MAX_PACKET = 32768


def server_version_for(keyword: str) -> str:
    """A stable OpenSSH-looking version derived from the obfuscation key (as Psiphon)."""
    seed = salted_seed(hashlib.sha256(keyword.encode()).digest(), "ssh-server-version")
    return generate(r"OpenSSH_[7-8]\.[0-9]", SeededPRNG(seed)).decode("ascii")


class TunnelServer:
    """All listeners and shared state of one server process."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.sessions = SessionRegistry()
        self.seed_history = SeedHistory()
        self.events = EventLog(config.path(config.log_filename) if config.log_filename else None)
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
        self.clients: set[ClientSession] = set()
        self.api = APIHandler(self)
        self.discovery = ServerDiscovery(config.discovery_value_hmac_key)
        self._servers: list[asyncio.AbstractServer] = []
        self._ossh: OSSHListener | None = None
        self._stopped = asyncio.Event()
        self._options = self._ssh_options()

    # -- services the API handlers use (GeoIP and discovery arrive with later work) ----

    def client_region(self, client_ip: str) -> str:
        return "None"

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
            encryption_algs=list(ENCRYPTION_ALGS), mac_algs=list(MAC_ALGS),
            kex_algs=list(KEX_ALGS), compression_algs=list(COMPRESSION_ALGS),
            allow_pty=False, agent_forwarding=False, x11_forwarding=False,
            keepalive_interval=120, keepalive_count_max=3,
            window=SSH_WINDOW, max_pktsize=SSH_MAX_PACKET,
        )

    def _ossh_connection(self, event, transport):
        return new_server_connection(self._options, tunnel_protocol="OSSH",
                                     ossh_prefix=event.prefix_spec_name,
                                     upstream_ossh_padding=event.padding_length)

    def _irregular(self, error: ProtocolError) -> None:
        self.events.irregular_tunnel("OSSH", error.reason)

    async def start(self) -> None:
        cfg = self.config
        host = cfg.listen_ip_address
        ports = cfg.tunnel_protocol_ports
        if "OSSH" in ports:
            self._ossh = OSSHListener(cfg.obfuscated_ssh_key, self._ossh_connection,
                                      history=self.seed_history,
                                      handshake_timeout=cfg.handshake_timeout,
                                      on_irregular=self._irregular)
            self._servers.append(await self._ossh.start(host, ports["OSSH"]))
        if "SSH" in ports:
            loop = asyncio.get_running_loop()
            self._servers.append(await loop.create_server(
                lambda: new_server_connection(self._options, tunnel_protocol="SSH"),
                host, ports["SSH"], reuse_address=True, backlog=1024))
        log.info("serving %s on %s", ", ".join(f"{p}:{n}" for p, n in ports.items()), host)

    def bound_ports(self) -> dict[str, int]:
        names = [p for p in ("OSSH", "SSH") if p in self.config.tunnel_protocol_ports]
        return {name: server.sockets[0].getsockname()[1] for name, server in zip(names, self._servers)}

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        if self._ossh is not None:
            self._ossh.close()
        for client in list(self.clients):
            client.close()
        for server in self._servers:
            await server.wait_closed()
        self.events.close()
        self._stopped.set()

    async def serve_until_signalled(self) -> None:
        """Start, then stop cleanly on SIGTERM or SIGINT."""
        await self.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await self.stop()
