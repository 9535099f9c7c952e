"""The seams between the server's parts: what each part may ask of another.

The server process (``service``), a client's session (``session``), the API handler
(``api``), its forwards (``portforwards``, ``udpgw``) and the stats builders (``stats``)
depend on these Protocols, never on each other's classes, so that none of them imports
another to name its type and each can be tested with small fakes:

* ``SessionHost``: what a session asks of the server process (credentials, GeoIP,
  traffic rules, the server-wide forward policy, the session registry, the API, events);
* ``APIHost`` and ``APIEvents``: what the API handler asks of the server process;
* ``TunnelView``: what ``stats`` reads of a tunnel to build its events;
* ``APIClient``: what the API handler asks of the session it answers;
* ``ForwardingSession`` and ``UdpgwSession``: what forwards ask of their session
  (limits, the destination decision, accounting, the downstream rate limit).

Members are read-only properties where the asker only reads, so a concrete class may
answer with a plain attribute. This module imports only records, never a part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from collections.abc import Awaitable, Callable, Sequence

if TYPE_CHECKING:
    from ..core.trafficrules import ClientFacts, EffectiveRules
    from .geoip import GeoIPData
    from .policy import Decision
    from .psinet import PsinetSnapshot
    from .tunnelstate import HandshakeState, TunnelCounters

T = TypeVar("T")


# -- what the API handler and stats see of a tunnel --------------------------------------

class TunnelView(Protocol):
    """A tunnel as its events describe it (read only)."""

    @property
    def tunnel_protocol(self) -> str: ...
    @property
    def ossh_prefix(self) -> str | None: ...
    @property
    def session_id(self) -> str | None: ...
    @property
    def started(self) -> float: ...
    @property
    def geoip(self) -> GeoIPData: ...
    @property
    def handshake(self) -> HandshakeState | None: ...
    @property
    def counters(self) -> TunnelCounters: ...


class APIClient(TunnelView, Protocol):
    """The session an API request came over."""

    @property
    def peer_address(self) -> tuple[str, int]: ...
    @property
    def rules(self) -> EffectiveRules: ...

    def complete_handshake(self, state: HandshakeState, split_regions: frozenset[str]) -> None:
        """Keep the handshake and re-select the traffic rules with what it said."""

    def admit_records(self, valid: Sequence[T], invalid: int, skipped: int) -> list[T]:
        """The client records this tunnel may still log (the rest are counted as dropped)."""

    def close(self) -> None: ...


# -- what the API handler asks of the server process -------------------------------------

class APIHost(Protocol):
    @property
    def psinet_snapshot(self) -> PsinetSnapshot: ...

    def discover(self, client_ip: str) -> list[str]:
        """Server entries to give this client (the discovery algorithm's pick)."""

    def own_server_entry(self, tag: str) -> str | None:
        """This server's own encoded entry for a client that says it is missing one."""

    def invalid_server_entry_tags(self, tags: list) -> list[str]: ...


class APIEvents(Protocol):
    def unique_user(self, fields: dict) -> None: ...
    def client_records(self, records: list[tuple[str, dict]]) -> None: ...


class APIResponder(Protocol):
    def handle(self, client: APIClient, name: str, payload: bytes) -> Awaitable[bytes | None]: ...


# -- what a session asks of the server process ---------------------------------------------

class GeoLookup(Protocol):
    def lookup(self, ip: str) -> GeoIPData: ...


class DestinationPolicy(Protocol):
    """The server-wide rules: bogons, the server's own listeners, configured TCP ports."""

    def check(self, ip_text: str, port: int) -> Decision: ...
    def check_address(self, ip_text: str, port: int) -> Decision: ...


class TunnelEvents(Protocol):
    def server_tunnel(self, fields: dict) -> None: ...


class ServedClient(Protocol):
    """What the server process does with the clients it serves."""

    def reselect_rules(self) -> None: ...
    def close(self) -> None: ...


class SessionHost(Protocol):
    @property
    def ssh_credentials(self) -> tuple[str, str]:
        """(username, password) every client must present."""
    @property
    def geoip(self) -> GeoLookup: ...
    @property
    def forward_policy(self) -> DestinationPolicy: ...
    @property
    def dns_resolver(self) -> tuple[str, int] | None: ...
    @property
    def api(self) -> APIResponder: ...
    @property
    def events(self) -> TunnelEvents: ...

    def select_rules(self, facts: ClientFacts) -> EffectiveRules: ...
    def is_udpgw_address(self, host: str, port: int) -> bool: ...

    def register_session(self, session_id: str, close: Callable[[], None]) -> None:
        """This connection is now the only one for ``session_id`` (an older one is closed)."""

    def unregister_session(self, session_id: str, close: Callable[[], None]) -> None: ...
    def client_opened(self, client: ServedClient) -> None: ...
    def client_closed(self, client: ServedClient) -> None: ...

    def irregular(self, listener: str, reason: str, peer_ip: str) -> None:
        """A connection that was not a client (logged with GeoIP names, never the address)."""


# -- what forwards ask of their session ----------------------------------------------------

class ForwardingSession(Protocol):
    @property
    def rules(self) -> EffectiveRules:
        """Limits: forward counts, dial and idle timeouts."""
    @property
    def counters(self) -> TunnelCounters:
        """Where the forwards count bytes and forwards."""
    @property
    def closing(self) -> bool: ...

    def forward_decision(self, kind: str, ip: str, port: int, *, dns: bool = False) -> Decision: ...

    def in_split_region(self, ip: str) -> bool:
        """True when the client wants ``ip`` reached directly, not through the tunnel."""

    def charge_downstream(self, n: int) -> float:
        """Charge ``n`` bytes to the client's downstream limit: seconds to pause reading."""

    @property
    def downstream_limited(self) -> bool:
        """Whether the client's downstream has a rate limit (destinations are then read in
        small bursts)."""


class UdpgwSession(ForwardingSession, Protocol):
    @property
    def dns_resolver(self) -> tuple[str, int] | None: ...

    def udpgw_closed(self, channel: Any) -> None: ...
