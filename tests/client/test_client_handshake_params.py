"""The handshake the client builds (client/dialer.py): one ``HandshakeParams`` per dial,
which psiphond's rules accept in both encodings, with the protocol's wire name."""

from __future__ import annotations

import base64

import asyncssh
import pytest

from onehop.client.config import parse_client_config
from onehop.client.dialer import _dial_target, handshake_params
from onehop.core.api import HandshakeParams, TunnelProtocol

from tests.helpers.builders import make_entry

HOST_KEY = base64.b64encode(asyncssh.generate_private_key("ssh-ed25519").public_data).decode()


class FakeTunnel:
    upstream_ossh_padding = 1234


CONFIG = parse_client_config({
    "SponsorId": "0123456789abcdef", "PropagationChannelId": "FFFFFFFFFFFFFFFF", "EgressRegion": "DE",
    "SplitTunnelOwnRegion": True, "SplitTunnelRegions": ["US", "CA"],
    "UpstreamProxyURL": "socks5://127.0.0.1:1080"})


@pytest.mark.parametrize("protocol", list(TunnelProtocol))
@pytest.mark.parametrize("packed", [False, True])
def test_handshake_params_are_what_psiphond_accepts(protocol, packed):
    entry = make_entry("198.51.100.4", region="US", sshHostKey=HOST_KEY).with_local("EMBEDDED", "2026-07-01T12:34:56Z")
    target = _dial_target(entry, protocol, "password", CONFIG)
    record = handshake_params(CONFIG, entry, protocol, target, FakeTunnel(), candidate_number=3,
                              dial_duration=0.5, established_tunnels=1)
    assert record.relay_protocol == protocol.relay_protocol
    assert (record.ossh_prefix is not None) == (protocol is TunnelProtocol.OSSH_PREFIX)
    assert record.sponsor_id == "0123456789ABCDEF"
    assert record.split_tunnel == "1" and record.split_tunnel_regions == ("US", "CA")
    assert record.egress_region == "DE" and record.upstream_proxy_type == "socks5"
    assert record.server_entry_timestamp == "2026-07-01T12:00:00Z"
    assert record.candidate_number == "3" and record.dial_duration == "500"
    assert record.wants_cbor_response and record.upstream_ossh_padding == "1234"
    # the server reads back exactly what was sent, narrowed to the protocol it runs
    assert HandshakeParams.decode(record.encode(packed), {protocol.relay_protocol}) == record
