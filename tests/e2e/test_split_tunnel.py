"""Split tunnelling by region, Psiphon's way: the client names regions it wants
untunnelled (SplitTunnelOwnRegion, SplitTunnelRegions), the server (which knows GeoIP)
refuses forwards into them with CHANNEL_REJECT_REASON_SPLIT_TUNNEL and the client
connects directly; ``direct-tcpip-no-split-tunnel@psiphon.ca`` forwards are never split.

GeoIP here: 127.0.0.0/16 is DE (the client, the server and one page), 127.77.0.0/16 is FR
(the other page)."""

from __future__ import annotations

import asyncio
import os

import asyncssh
import pytest

from onehop.client.split_tunnel import CHANNEL_REJECT_REASON_SPLIT_TUNNEL, UNTUNNELED
from tests.e2e.proxyclient import http_get_via_socks
from tests.server.mmdb import city_record, write_mmdb

pytestmark = pytest.mark.e2e

FRENCH_HOST = "127.77.0.1"


def geoip(tmp_path) -> list[str]:
    path = tmp_path / "city.mmdb"
    write_mmdb(path, {"127.0.0.0/16": city_record("DE", "Berlin"), "127.77.0.0/16": city_record("FR", "Paris")})
    return [str(path)]


async def serve_on(host: str, body: bytes):
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(handle, host, 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
async def pages():
    german, french = os.urandom(1000), os.urandom(1000)
    (g_server, g_port), (f_server, f_port) = await serve_on("127.0.0.1", german), await serve_on(FRENCH_HOST, french)
    yield {"DE": ("127.0.0.1", g_port, german), "FR": (FRENCH_HOST, f_port, french)}
    g_server.close()
    f_server.close()


async def fetch(client, page) -> bytes:
    host, port, _ = page
    return await http_get_via_socks(client.socks_port, host, port)


@pytest.mark.parametrize("own_region, regions, split, tunnelled", [
    (True, (), "DE", "FR"),
    (False, ("FR",), "FR", "DE"),
])
async def test_split_regions_go_direct_the_rest_through_the_tunnel(tmp_path, network, make_client, pages, notice_log,
                                                                   own_region, regions, split, tunnelled):
    running = await network.add(GeoIPDatabaseFilenames=geoip(tmp_path))
    client = await make_client([running.entry], split_tunnel_own_region=own_region, split_tunnel_regions=regions)
    assert client.active.handshake.client_region == "DE"
    (session,) = running.server.clients
    assert session.split_regions == {split}

    assert await fetch(client, pages[split]) == pages[split][2]
    assert session.forwards.counts.split == 1 and session.forwards.counts.opened == 0
    assert client.untunnelled.count == 1
    host, port, _ = pages[split]
    assert [n["data"] for n in notice_log.of_type(UNTUNNELED)] == [{"address": f"{host}:{port}"}]

    assert await fetch(client, pages[tunnelled]) == pages[tunnelled][2]
    assert session.forwards.counts.opened == 1 and session.forwards.counts.split == 1
    assert session.forwards.counts.rejected == 0


async def test_without_split_settings_everything_is_tunnelled(tmp_path, network, make_client, pages):
    running = await network.add(GeoIPDatabaseFilenames=geoip(tmp_path))
    client = await make_client([running.entry])
    for page in pages.values():
        assert await fetch(client, page) == page[2]
    (session,) = running.server.clients
    assert session.forwards.counts.opened == 2 and session.forwards.counts.split == 0


async def test_no_split_channel_type_is_never_split(tmp_path, network, make_client, pages):
    running = await network.add(GeoIPDatabaseFilenames=geoip(tmp_path))
    client = await make_client([running.entry], split_tunnel_own_region=True)
    host, port, _ = pages["DE"]
    conn = client.active.client.conn
    with pytest.raises(asyncssh.ChannelOpenError) as refused:
        await conn.create_connection(asyncssh.SSHTCPSession, host, port)
    assert refused.value.code == CHANNEL_REJECT_REASON_SPLIT_TUNNEL
    # Psiphon's own channel type for forwards that must stay in the tunnel (asyncssh has no
    # public call for a custom channel type: its TCP channel's open, as Psiphon's client sends it).
    chan = conn.create_tcp_channel()
    await chan._open_tcp(asyncssh.SSHTCPSession, b"direct-tcpip-no-split-tunnel@psiphon.ca", host, port, "", 0)
    chan.close()
    (session,) = running.server.clients
    assert session.forwards.counts.opened == 1 and session.forwards.counts.split == 1
