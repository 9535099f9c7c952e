"""``onehop client --whole-device`` in namespaces: a device's plain programs (a web fetch,
DNS to a resolver of its choosing, a UDP echo, IPv6) and a LAN host behind it reach the
world only through the tunnel, a capture on the device's uplink shows nothing but the
tunnel's flow before, during and after a server loss, and rules left by a SIGKILLed
client are removed by the next start and by ``--cleanup``."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from .conftest import (DEVICE_IP, DEVICE_IP6, LAN_IP, ONEHOP, SERVER_IP, WEB_IP, WEB_IP6, Net, sh)

pytestmark = pytest.mark.e2e

OSSH_PORT = 9443


def notices(net: Net, log: str) -> list[dict]:
    out = []
    for line in net.log(log).splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def tunnels_up(net: Net, log: str) -> int:
    return sum(1 for n in notices(net, log) if n["noticeType"] == "Tunnels" and n["data"]["count"] == 1)


def table_present(net: Net) -> bool:
    return net.run("dev", "nft", "list", "table", "inet", "onehop").returncode == 0


def start_server(net: Net, config: str, log: str) -> subprocess.Popen:
    proc = net.start("wld", *ONEHOP, "server", "run", "--config", config, log=log)
    net.wait_for(lambda: net.run("wld", "ss", "-ltn", f"sport = :{OSSH_PORT}").stdout.count("LISTEN") > 0,
                 20, "the server to listen")
    return proc


def start_client(net: Net, entry: str, log: str, *extra: str) -> subprocess.Popen:
    return net.start("dev", *ONEHOP, "client", "--whole-device", "--target-server-entry", "@" + entry,
                     "--data-dir", str(net.tmp / "client"), "--socks-port", "0", "--http-port", "0",
                     "--notices", *extra, log=log)


def leaks(net: Net, pcap: str) -> list[str]:
    """Packets on the uplink that are not the tunnel's own flow (nor the kernel's link-local
    IPv6 housekeeping: router solicitations, neighbour discovery, multicast listener reports,
    sent from link-local or unspecified addresses as the links come up)."""
    out = sh("tcpdump", "-n", "-r", str(net.tmp / pcap),
             f"(ip or ip6) and not (host {SERVER_IP} and tcp port {OSSH_PORT})"
             " and not (ip6 src net fe80::/10) and not (ip6 src host ::)",
             check=False)
    return [line for line in out.stdout.splitlines() if line.strip()]


def generate_server(net: Net, **settings) -> tuple[str, str]:
    """server.json (the world's resolver as the server's, plus ``settings``) and the entry."""
    sh(*ONEHOP, "server", "generate", "--ip", SERVER_IP, "--ossh-port", str(OSSH_PORT), "--allow-bogons",
       "--out", str(net.tmp / "server"))
    path = net.tmp / "server" / "server.json"
    config = json.loads(path.read_text())
    config.update(DNSResolverIPAddress=WEB_IP, **settings)
    path.write_text(json.dumps(config))
    return str(path), str(net.tmp / "server" / "server-entry.dat")


def test_whole_device_tunnels_everything_and_leaks_nothing(net: Net):
    # DNS to the world's resolver (a private address, as a LAN router's is) travels with
    # udpgw's DNS flag; the server's resolver is that same resolver here.
    config, entry = generate_server(net)
    net.start("wld", "python3", "-u", *_peers(), "world", WEB_IP, WEB_IP6, log="world.log")
    net.wait_for(lambda: "ready" in net.log("world.log"), 10, "the world's services")
    server = start_server(net, config, "server1.log")
    capture = net.start("dev", "tcpdump", "-U", "-n", "-i", net.uplink, "-w", str(net.tmp / "uplink.pcap"),
                        log="tcpdump.log")
    net.wait_for(lambda: "listening" in net.log("tcpdump.log"), 10, "tcpdump")

    client = start_client(net, entry, "client1.log", "--share-lan", net.lan_link)
    net.wait_for(lambda: tunnels_up(net, "client1.log") >= 1, 30, "the first tunnel")
    assert any(n["noticeType"] == "WholeDevice" and n["data"]["active"] for n in notices(net, "client1.log"))

    # The device's plain programs: the world sees the server, never the device.
    for ip in (WEB_IP, WEB_IP6):
        fetched = net.peer("dev", "fetch", ip)
        assert fetched.returncode == 0, fetched.stdout
        assert fetched.stdout.strip() not in (DEVICE_IP, DEVICE_IP6), fetched.stdout
    dns = net.peer("dev", "dns", WEB_IP)
    assert dns.stdout.strip() == "192.0.2.33", dns.stdout
    echo = net.peer("dev", "echo", WEB_IP)
    assert echo.stdout.strip() == "echo-payload", echo.stdout
    assert net.peer("dev", "dns", WEB_IP6).stdout.strip() == "192.0.2.33"
    # Gateway mode: a LAN host behind the device, tunnelled too.
    lan = net.peer("lan", "fetch", WEB_IP)
    assert lan.returncode == 0 and lan.stdout.strip() not in (LAN_IP, DEVICE_IP), lan.stdout
    assert net.peer("lan", "dns", WEB_IP).stdout.strip() == "192.0.2.33"
    world_seen = net.log("world.log")
    assert f"from {DEVICE_IP}" not in world_seen and f"seen {DEVICE_IP}" not in world_seen
    assert LAN_IP not in world_seen

    # The server dies: nothing goes around the tunnel, fetches fail (or wait) instead.
    net.stop(server, signal.SIGKILL)
    net.wait_for(lambda: any(n["noticeType"] == "Tunnels" and n["data"]["count"] == 0
                             for n in notices(net, "client1.log")), 30, "the client to notice the loss")
    seen_before = net.log("world.log").count("seen")
    assert net.peer("dev", "fetch", WEB_IP).returncode != 0
    assert net.peer("dev", "dns", WEB_IP).returncode != 0
    assert net.peer("lan", "fetch", WEB_IP).returncode != 0
    assert net.log("world.log").count("seen") == seen_before

    # It comes back: the client reconnects and the device's programs work again.
    server = start_server(net, config, "server2.log")
    net.wait_for(lambda: tunnels_up(net, "client1.log") >= 2, 40, "the tunnel to come back")
    assert net.peer("dev", "fetch", WEB_IP).stdout.strip() not in ("", DEVICE_IP)
    assert net.peer("dev", "echo", WEB_IP).stdout.strip() == "echo-payload"  # a new udpgw channel

    # SIGKILL: the table stays (fail closed) until the next start removes it.
    net.stop(client, signal.SIGKILL)
    assert table_present(net)
    assert net.peer("dev", "fetch", WEB_IP).returncode != 0
    client = start_client(net, entry, "client2.log")
    net.wait_for(lambda: tunnels_up(net, "client2.log") >= 1, 30, "the second client's tunnel")
    assert any(n["noticeType"] == "Info" and "left behind" in n["data"].get("message", "")
               for n in notices(net, "client2.log"))
    assert net.peer("dev", "echo", WEB_IP).stdout.strip() == "echo-payload"
    assert net.peer("dev", "fetch", WEB_IP).stdout.strip() not in ("", DEVICE_IP)
    # A normal exit removes the table (and the policy route) before the process ends.
    assert net.stop(client) == 0
    assert not table_present(net)
    assert "28521" not in net.run("dev", "ip", "rule").stdout
    final = [n for n in notices(net, "client2.log") if n["noticeType"] == "WholeDevice"][-1]["data"]
    assert final["active"] is False and final["tcpConnections"] >= 1 and final["udpDatagrams"] >= 1

    # --cleanup after a crash
    client = start_client(net, entry, "client3.log")
    net.wait_for(lambda: table_present(net), 20, "the third client's rules")
    net.stop(client, signal.SIGKILL)
    cleaned = net.run("dev", *ONEHOP, "client", "--whole-device", "--cleanup")
    assert cleaned.returncode == 0 and "removed" in cleaned.stdout, cleaned
    assert not table_present(net)

    # The capture, from before the first start to here: only the tunnel's own flow.
    net.stop(capture, signal.SIGINT)
    assert leaks(net, "uplink.pcap") == []
    # With the rules gone the device goes direct again (so the capture would have seen it).
    assert net.peer("dev", "fetch", WEB_IP).stdout.strip() == DEVICE_IP


def _peers():
    from .conftest import PEERS
    return (PEERS,)


SPLIT_WEB_IP = "10.200.5.1"   # outside the split region: tunnelled


def test_split_tunnel_regions_go_direct_in_whole_device_mode(net: Net):
    """SplitTunnelRegions [FR] with the world's web address in FR: that fetch leaves directly
    (the web server sees the device), one outside FR still goes through the tunnel."""
    from tests.server.mmdb import city_record, write_mmdb
    write_mmdb(net.tmp / "city.mmdb", {"10.200.1.0/24": city_record("DE", "Berlin"),
                                       "10.200.3.0/24": city_record("FR", "Paris")})
    config_path, entry = generate_server(net, GeoIPDatabaseFilenames=[str(net.tmp / "city.mmdb")])
    (net.tmp / "client.json").write_text(json.dumps({"SplitTunnelRegions": ["FR"]}))
    sh("ip", "-n", net.ns["wld"], "addr", "add", SPLIT_WEB_IP + "/32", "dev", "lo")
    net.start("wld", "python3", "-u", *_peers(), "world", WEB_IP, SPLIT_WEB_IP, log="world.log")
    net.wait_for(lambda: "ready" in net.log("world.log"), 10, "the world's services")
    start_server(net, config_path, "server.log")
    client = start_client(net, entry, "client.log",
                          "--config", str(net.tmp / "client.json"))
    net.wait_for(lambda: tunnels_up(net, "client.log") >= 1, 30, "the tunnel")

    assert net.peer("dev", "fetch", WEB_IP).stdout.strip() == DEVICE_IP          # split: direct
    assert net.peer("dev", "fetch", SPLIT_WEB_IP).stdout.strip() not in ("", DEVICE_IP)  # tunnelled
    assert [n["data"]["address"] for n in notices(net, "client.log")
            if n["noticeType"] == "Untunneled"] == [f"{WEB_IP}:80"]
    assert net.stop(client) == 0
