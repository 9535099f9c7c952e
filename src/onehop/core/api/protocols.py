"""Tunnel protocol names: the ones onehop runs, and every one Psiphon's API may name.

``TunnelProtocol`` is onehop's own set. ``SSH`` and ``OSSH`` are Psiphon's names (protocol.go
``TUNNEL_PROTOCOL_SSH``/``TUNNEL_PROTOCOL_OBFUSCATED_SSH``): server entry capabilities, the
server's listener ports and the handshake's ``relay_protocol``. ``OSSH-PREFIX`` is a client
choice only: Psiphon has no such protocol, an OSSH dial with a prefix is ``relay_protocol``
OSSH plus the ``ossh_prefix`` parameter. Members are ``str``s, so they compare, format and
serialise as the plain names.
"""

from __future__ import annotations

from enum import StrEnum


class TunnelProtocol(StrEnum):
    OSSH = "OSSH"
    OSSH_PREFIX = "OSSH-PREFIX"
    SSH = "SSH"

    @property
    def relay_protocol(self) -> TunnelProtocol:
        """The name on the wire (handshake ``relay_protocol``, entry capability, server port)."""
        return TunnelProtocol.OSSH if self is TunnelProtocol.OSSH_PREFIX else self

    @property
    def obfuscated(self) -> bool:
        return self.relay_protocol is TunnelProtocol.OSSH


#: What a client may choose (``LimitTunnelProtocols``, ``--protocol``), in the default order.
CLIENT_PROTOCOLS: tuple[TunnelProtocol, ...] = (TunnelProtocol.OSSH, TunnelProtocol.OSSH_PREFIX,
                                                 TunnelProtocol.SSH)
#: What a server listens for and a server entry advertises (OSSH serves both OSSH choices).
SERVER_PROTOCOLS: tuple[TunnelProtocol, ...] = (TunnelProtocol.OSSH, TunnelProtocol.SSH)

# Every protocol name of Psiphon's protocol.go, for checking parameters that name one.
_DIRECT_PROTOCOLS = (
    "SSH", "OSSH", "TLS-OSSH", "UNFRONTED-MEEK-OSSH", "UNFRONTED-MEEK-HTTPS-OSSH",
    "UNFRONTED-MEEK-SESSION-TICKET-OSSH", "FRONTED-MEEK-OSSH", "FRONTED-MEEK-HTTP-OSSH",
    "QUIC-OSSH", "FRONTED-MEEK-QUIC-OSSH", "SHADOWSOCKS-OSSH",
)
KNOWN_TUNNEL_PROTOCOLS = frozenset(
    _DIRECT_PROTOCOLS + ("TAPDANCE-OSSH", "CONJURE-OSSH")
    + tuple("INPROXY-WEBRTC-" + name for name in _DIRECT_PROTOCOLS)
)
