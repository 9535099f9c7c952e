"""One client's SSH connection as the server sees it: the policy the tunnel layer asks.

Credentials are checked in constant time; the session ID from the JSON password makes
this the only live connection for that session. Forwards need a completed handshake.
The client's traffic rules are selected when it connects (tunnel protocol, GeoIP) and
again after the handshake (client version and parameters) and whenever the rules file
changes. The peer address is kept in memory for GeoIP, discovery and the handshake's
client_address, and is never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from typing import TYPE_CHECKING

import asyncssh

from ..core.api import parse_ssh_password
from ..core.trafficrules import ClientFacts, EffectiveRules
from ..errors import ForwardReason, RemoteProtocolError, SSHReason
from ..tunnel.relay import ByteCounter
from .forwarding import prohibited
from .policy import Decision
from .portforwards import ForwardCounts, PortForwards
from .stats import server_tunnel_fields
from .throttle import TokenBucket
from .udpgw import UdpgwChannel

if TYPE_CHECKING:
    from .api import HandshakeState
    from .service import TunnelServer

log = logging.getLogger(__name__)

MAX_RANDOM_STREAMS_BEFORE_HANDSHAKE = 1
#: asyncssh disconnect codes that mean the peer spoke broken SSH (a probe, not a client).
_IRREGULAR_CODES = {asyncssh.DISC_PROTOCOL_ERROR: SSHReason.PROTOCOL_ERROR,
                    asyncssh.DISC_KEY_EXCHANGE_FAILED: SSHReason.KEY_EXCHANGE_FAILED,
                    asyncssh.DISC_MAC_ERROR: SSHReason.MAC_ERROR,
                    asyncssh.DISC_PROTOCOL_VERSION_NOT_SUPPORTED: SSHReason.VERSION_NOT_SUPPORTED}


class ClientSession:
    def __init__(self, server: "TunnelServer", conn: asyncssh.SSHServerConnection) -> None:
        self.server = server
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("", 0)
        self.peer_ip: str = peer[0]
        self.peer_port: int = peer[1]
        self.tunnel_protocol: str = conn.get_extra_info("tunnel_protocol") or "SSH"
        self.ossh_prefix: str | None = conn.get_extra_info("ossh_prefix")
        self.session_id: str | None = None
        self.sponsor_id: str | None = None
        self.handshake: "HandshakeState | None" = None
        self.split_regions: frozenset[str] = frozenset()  # from the handshake (splittunnel.py)
        self.started = time.time()
        self.geoip = server.geoip.lookup(self.peer_ip)
        self.tcp_bytes = ByteCounter()
        self.udp_bytes = ByteCounter()
        self.forwards = PortForwards(self)
        self.udp_counts = ForwardCounts()
        self.udpgw: UdpgwChannel | None = None
        self.udpgw_channels = 0
        self.records_logged = self.records_dropped = self.records_invalid = 0
        self.read_bucket = TokenBucket()
        self.write_bucket = TokenBucket()
        self.rules = EffectiveRules()
        self._random_streams = 0
        self.closing = False
        self.reselect_rules()
        if hasattr(conn, "charge_upstream"):
            conn.charge_upstream = self.charge_upstream  # type: ignore[attr-defined]
        server.clients.add(self)

    @property
    def bytes(self) -> ByteCounter:
        """TCP and UDP together."""
        return ByteCounter(self.tcp_bytes.up + self.udp_bytes.up, self.tcp_bytes.down + self.udp_bytes.down)

    # -- traffic rules ----------------------------------------------------------------

    def facts(self) -> ClientFacts:
        geo, hs = self.geoip, self.handshake
        return ClientFacts(self.tunnel_protocol, geo.region, geo.city, geo.isp, geo.asn,
                           handshake_completed=hs is not None, handshake_params=hs.params if hs else {})

    def reselect_rules(self) -> None:
        self.apply_rules(self.server.traffic_rules.rules.select(self.facts()))

    def apply_rules(self, rules: EffectiveRules) -> None:
        self.rules = rules
        closing = rules.close_after_exhausted  # then the allowance ends the tunnel, no throttling
        self.read_bucket.configure(0 if closing else rules.read_bytes_per_second, rules.read_unthrottled_bytes)
        self.write_bucket.configure(0 if closing else rules.write_bytes_per_second, rules.write_unthrottled_bytes)

    def charge_upstream(self, n: int) -> float:
        return self._charge(self.read_bucket, n)

    def charge_downstream(self, n: int) -> float:
        return self._charge(self.write_bucket, n)

    def _charge(self, bucket: TokenBucket, n: int) -> float:
        delay = bucket.consume(n)
        if self.rules.close_after_exhausted and bucket.unthrottled and bucket.allowance_exhausted:
            self.close()
        return delay

    def forward_decision(self, kind: str, ip: str, port: int, *, dns: bool = False) -> Decision:
        """May this client reach ``ip``:``port`` over ``kind`` ('tcp' or 'udp')?

        The server-wide policy (bogons, own listeners, configured TCP ports) comes first,
        except for the server's own DNS resolver; then the client's traffic rules.
        """
        policy = self.server.forward_policy
        if not dns:
            decision = policy.check(ip, port) if kind == "tcp" else policy.check_address(ip, port)
            if not decision.allowed:
                return decision
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return Decision.deny(ForwardReason.NOT_AN_IP_ADDRESS)
        rules = self.rules
        asn = self.server.geoip.lookup(ip).asn if rules.allow_asns or rules.disallow_asns else "None"
        allowed, reason = rules.permits(kind, address, port, asn)
        return Decision(allowed, reason)

    # -- TunnelServerPolicy -----------------------------------------------------------

    def authenticate(self, username: str, password: str) -> bool:
        cfg = self.server.config
        user_ok = hmac.compare_digest(username.encode("utf-8", "replace"), cfg.ssh_username.encode())
        try:
            payload = parse_ssh_password(password)
        except RemoteProtocolError:
            return False
        password_ok = hmac.compare_digest(payload.ssh_password.encode("utf-8", "replace"),
                                          cfg.ssh_password.encode())
        if not (user_ok and password_ok):
            return False
        self.session_id = payload.session_id
        self.sponsor_id = payload.sponsor_id
        self.server.sessions.register(payload.session_id, self.close)
        return True

    async def api_request(self, name: str, payload: bytes) -> bytes | None:
        return await self.server.api.handle(self, name, payload)

    async def open_forward(self, host: str, port: int, *, no_split: bool = False):
        if self.handshake is None:
            self.forwards.counts.rejected += 1
            raise prohibited()
        if self.server.is_udpgw_address(host, port):
            return self.open_udpgw()
        return await self.forwards.open_tcp(host, port, no_split=no_split)

    def open_udpgw(self) -> UdpgwChannel:
        """The client's udpgw channel; one per client, a new one replaces the old."""
        if self.udpgw is not None:
            self.udpgw.close()
        self.udpgw = UdpgwChannel(self)
        self.udpgw_channels += 1
        return self.udpgw

    def udpgw_closed(self, channel: UdpgwChannel) -> None:
        if self.udpgw is channel:
            self.udpgw = None

    def random_stream_allowed(self) -> bool:
        if self.handshake is not None:
            return True
        self._random_streams += 1
        return self._random_streams <= MAX_RANDOM_STREAMS_BEFORE_HANDSHAKE

    def connection_closed(self, exc: Exception | None) -> None:
        self.closing = True
        if self.session_id is not None:
            self.server.sessions.unregister(self.session_id, self.close)
        self.server.clients.discard(self)
        self.forwards.close_all()
        if self.udpgw is not None:
            self.udpgw.close()
        if self.session_id is not None:
            self.server.events.server_tunnel(server_tunnel_fields(self, time.time()))
        elif isinstance(exc, asyncssh.Error) and exc.code in _IRREGULAR_CODES:
            self.server.irregular(self.tunnel_protocol, _IRREGULAR_CODES[exc.code], self.peer_ip)

    # -- helpers ----------------------------------------------------------------------

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.conn.close()
