"""Psiphon's server-side split tunnelling: forwards to chosen regions are refused.

A client asks for it in the handshake: ``split_tunnel`` = "1" (its own region, as the
server's GeoIP sees the client) and ``split_tunnel_regions`` (a list of country codes).
A ``direct-tcpip`` forward whose resolved destination lies in one of those regions is
then refused with Psiphon's reject reason ``CHANNEL_REJECT_REASON_SPLIT_TUNNEL``, and
the client connects to it directly. ``direct-tcpip-no-split-tunnel@psiphon.ca``
forwards are never split. UDP (udpgw) is never split, as in psiphond.
"""

from __future__ import annotations

from asyncssh import ChannelOpenError

from ..core.api import HandshakeParams

#: protocol.CHANNEL_REJECT_REASON_SPLIT_TUNNEL (a "private use" reason code, RFC 4254 5.1)
CHANNEL_REJECT_REASON_SPLIT_TUNNEL = 0xFE000000
UNKNOWN_REGIONS = ("", "None")


def split_regions(request: HandshakeParams, client_region: str) -> frozenset[str]:
    """The regions a client wants untunnelled, from its (validated) handshake parameters."""
    regions = set(request.split_tunnel_regions or ())
    if request.split_tunnel == "1" and client_region not in UNKNOWN_REGIONS:
        regions.add(client_region)
    return frozenset(r.upper() for r in regions if r not in UNKNOWN_REGIONS)


def split_tunnel_rejection() -> ChannelOpenError:
    return ChannelOpenError(CHANNEL_REJECT_REASON_SPLIT_TUNNEL, "split tunnel")
