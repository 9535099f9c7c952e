"""The shortest conversation: Psiphon's client, a onehop server, one page."""

from __future__ import annotations

from .harness import OnehopServer, PsiphonClient, socks5_get


def test_psiphon_client_fetches_a_page_through_a_onehop_server(tmp_path, procs, page):
    web, path, body = page
    server = OnehopServer(procs, tmp_path / "srv", protocols=("OSSH",))
    client = PsiphonClient(procs, tmp_path / "cli", {"LimitTunnelProtocols": ["OSSH"],
                                                     "TargetServerEntry": server.entry})
    client.wait_tunnel()
    assert socks5_get(client.socks_port, "127.0.0.1", web.port, path) == body
