"""One client's SSH connection as the server sees it: the policy the tunnel layer asks.

Credentials are checked in constant time; the session ID from the JSON password makes
this the only live connection for that session. Forwards need a completed handshake.
The client's traffic rules are selected when it connects (tunnel protocol, GeoIP) and
again after the handshake (client version and parameters) and whenever the rules file
changes. The peer address is kept in memory for GeoIP, discovery and the handshake's
client_address, and is never logged.

The session asks the server process only what ``seams.SessionHost`` offers, and answers
the API handler (``seams.APIClient``), its forwards (``seams.UdpgwSession``) and the
stats builders (``seams.TunnelView``). Its counts live in one ``TunnelCounters``.
"""

from __future__ import annotations

import builtins
import hmac
import ipaddress
import logging
import time
from typing import TYPE_CHECKING, TypeVar
from collections.abc import Sequence

import asyncssh

from ..core.api import parse_ssh_password
from ..core.trafficrules import ClientFacts, EffectiveRules
from ..errors import ForwardReason, RemoteProtocolError, SSHReason
from ..tunnel.relay import ByteCounter
from .forwarding import prohibited
from .geoip import GeoIPData
from .policy import Decision
from .portforwards import PortForwards
from .stats import server_tunnel_fields
from .throttle import TokenBucket
from .tunnelstate import HandshakeState, TunnelCounters
from .udpgw import UdpgwChannel

if TYPE_CHECKING:
    from .seams import SessionHost

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_RANDOM_STREAMS_BEFORE_HANDSHAKE = 1
#: asyncssh disconnect codes that mean the peer spoke broken SSH (a probe, not a client).
_IRREGULAR_CODES = {asyncssh.DISC_PROTOCOL_ERROR: SSHReason.PROTOCOL_ERROR,
                    asyncssh.DISC_KEY_EXCHANGE_FAILED: SSHReason.KEY_EXCHANGE_FAILED,
                    asyncssh.DISC_MAC_ERROR: SSHReason.MAC_ERROR,
                    asyncssh.DISC_PROTOCOL_VERSION_NOT_SUPPORTED: SSHReason.VERSION_NOT_SUPPORTED}


class ClientSession:
    """One client connection; ``conn`` needs only ``get_extra_info`` and ``close``."""

    def __init__(self, host: SessionHost, conn: asyncssh.SSHServerConnection) -> None:
        self._host = host
        self._conn = conn
        peer = conn.get_extra_info("peername") or ("", 0)
        self._peer: tuple[str, int] = (peer[0], peer[1])
        self._tunnel_protocol: str = conn.get_extra_info("tunnel_protocol") or "SSH"
        self._ossh_prefix: str | None = conn.get_extra_info("ossh_prefix")
        self._started = time.time()
        self._geoip = host.geoip.lookup(self._peer[0])
        self._session_id: str | None = None
        self._handshake: HandshakeState | None = None
        self._split_regions: frozenset[str] = frozenset()  # from the handshake (splittunnel.py)
        self._rules = EffectiveRules()
        self._closing = False
        self._random_streams = 0
        self.counters = TunnelCounters()
        #: Token buckets of the client's rate limits: upstream (read) and downstream (write).
        self.read_bucket = TokenBucket()
        self.write_bucket = TokenBucket()
        self.forwards = PortForwards(self)
        self.udpgw: UdpgwChannel | None = None
        self.reselect_rules()
        if hasattr(conn, "charge_upstream"):
            conn.charge_upstream = self.charge_upstream
        host.client_opened(self)

    # -- what the API handler, the forwards and stats read --------------------------------

    @property
    def conn(self) -> asyncssh.SSHServerConnection:
        return self._conn

    @property
    def peer_address(self) -> tuple[str, int]:
        return self._peer

    @property
    def tunnel_protocol(self) -> str:
        return self._tunnel_protocol

    @property
    def ossh_prefix(self) -> str | None:
        return self._ossh_prefix

    @property
    def started(self) -> float:
        return self._started

    @property
    def geoip(self) -> GeoIPData:
        return self._geoip

    @property
    def session_id(self) -> str | None:
        return self._session_id

    @property
    def handshake(self) -> HandshakeState | None:
        return self._handshake

    @property
    def split_regions(self) -> frozenset[str]:
        """Regions the client wants reached directly (from its handshake)."""
        return self._split_regions

    @property
    def rules(self) -> EffectiveRules:
        return self._rules

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def dns_resolver(self) -> tuple[str, int] | None:
        return self._host.dns_resolver

    @property
    def bytes(self) -> ByteCounter:
        """TCP and UDP together."""
        return self.counters.bytes

    # -- the handshake (asked by the API handler) ---------------------------------------

    def complete_handshake(self, state: HandshakeState, split_regions: frozenset[str]) -> None:
        self._handshake = state
        self._split_regions = split_regions
        self.reselect_rules()

    def admit_records(self, valid: Sequence[T], invalid: int, skipped: int) -> list[T]:
        return self.counters.records.admit(valid, invalid, skipped)

    # -- traffic rules ----------------------------------------------------------------

    def facts(self) -> ClientFacts:
        geo, hs = self._geoip, self._handshake
        return ClientFacts(self._tunnel_protocol, geo.region, geo.city, geo.isp, geo.asn,
                           handshake_completed=hs is not None, handshake_params=hs.params if hs else {})

    def reselect_rules(self) -> None:
        self.apply_rules(self._host.select_rules(self.facts()))

    def apply_rules(self, rules: EffectiveRules) -> None:
        self._rules = rules
        closing = rules.close_after_exhausted  # then the allowance ends the tunnel, no throttling
        self.read_bucket.configure(0 if closing else rules.read_bytes_per_second, rules.read_unthrottled_bytes)
        self.write_bucket.configure(0 if closing else rules.write_bytes_per_second, rules.write_unthrottled_bytes)
        if self.read_bucket.limited and hasattr(self._conn, "read_small"):
            self._conn.read_small()  # before the allowance ends, so its first paid read is small too

    def charge_upstream(self, n: int) -> float:
        return self._charge(self.read_bucket, n)

    @property
    def downstream_limited(self) -> bool:
        return self.write_bucket.limited

    def charge_downstream(self, n: int) -> float:
        return self._charge(self.write_bucket, n)

    def _charge(self, bucket: TokenBucket, n: int) -> float:
        delay = bucket.consume(n)
        if self._rules.close_after_exhausted and bucket.unthrottled and bucket.allowance_exhausted:
            self.close()
        return delay

    def forward_decision(self, kind: str, ip: str, port: int, *, dns: bool = False) -> Decision:
        """May this client reach ``ip``:``port`` over ``kind`` ('tcp' or 'udp')?

        The server-wide policy (bogons, own listeners, configured TCP ports) comes first,
        except for the server's own DNS resolver; then the client's traffic rules.
        """
        policy = self._host.forward_policy
        if not dns:
            decision = policy.check(ip, port) if kind == "tcp" else policy.check_address(ip, port)
            if not decision.allowed:
                return decision
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return Decision.deny(ForwardReason.NOT_AN_IP_ADDRESS)
        rules = self._rules
        asn = self._host.geoip.lookup(ip).asn if rules.allow_asns or rules.disallow_asns else "None"
        allowed, reason = rules.permits(kind, address, port, asn)
        return Decision(allowed, reason)

    def in_split_region(self, ip: str) -> bool:
        return bool(self._split_regions) and self._host.geoip.lookup(ip).region in self._split_regions

    # -- TunnelServerPolicy -----------------------------------------------------------

    def authenticate(self, username: str, password: str) -> bool:
        expected_user, expected_password = self._host.ssh_credentials
        user_ok = hmac.compare_digest(username.encode("utf-8", "replace"), expected_user.encode())
        try:
            payload = parse_ssh_password(password)
        except RemoteProtocolError:
            return False
        password_ok = hmac.compare_digest(payload.ssh_password.encode("utf-8", "replace"),
                                          expected_password.encode())
        if not (user_ok and password_ok):
            return False
        self._session_id = payload.session_id
        self._host.register_session(payload.session_id, self.close)
        return True

    async def api_request(self, name: str, payload: builtins.bytes) -> builtins.bytes | None:
        # builtins.: the ``bytes`` property of this class shadows the type in its body
        return await self._host.api.handle(self, name, payload)

    async def open_forward(self, host: str, port: int, *, no_split: bool = False):
        if self._handshake is None:
            self.counters.tcp_forwards.rejected += 1
            raise prohibited()
        if self._host.is_udpgw_address(host, port):
            return self.open_udpgw()
        return await self.forwards.open_tcp(host, port, no_split=no_split)

    def open_udpgw(self) -> UdpgwChannel:
        """The client's udpgw channel; one per client, a new one replaces the old."""
        if self.udpgw is not None:
            self.udpgw.close()
        self.udpgw = UdpgwChannel(self)
        self.counters.note_udpgw_channel()
        return self.udpgw

    def udpgw_closed(self, channel: UdpgwChannel) -> None:
        if self.udpgw is channel:
            self.udpgw = None

    def random_stream_allowed(self) -> bool:
        if self._handshake is not None:
            return True
        self._random_streams += 1
        return self._random_streams <= MAX_RANDOM_STREAMS_BEFORE_HANDSHAKE

    def connection_closed(self, exc: Exception | None) -> None:
        self._closing = True
        if self._session_id is not None:
            self._host.unregister_session(self._session_id, self.close)
        self._host.client_closed(self)
        self.forwards.close_all()
        if self.udpgw is not None:
            self.udpgw.close()
        if self._session_id is not None:
            self._host.events.server_tunnel(server_tunnel_fields(self, time.time()))
        elif isinstance(exc, asyncssh.Error) and exc.code in _IRREGULAR_CODES:
            self._host.irregular(self._tunnel_protocol, _IRREGULAR_CODES[exc.code], self._peer[0])

    # -- helpers ----------------------------------------------------------------------

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._conn.close()
