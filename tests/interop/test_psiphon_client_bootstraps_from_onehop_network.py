"""Psiphon's console client bootstraps from what ``onehop network`` produces, and nothing else.

One small network is built with the CLI (SQLite in a temporary directory): a sponsor with a
home page, a channel, a host on loopback and three servers on 127.0.0.1-3 (two embedded,
one discovery server). ``network export`` writes the server configs, which run unchanged
with ``onehop server run``; ``network publish`` writes the signed remote list and the
embedded list, served over HTTP with ETags. Psiphon's client then gets only:

* the remote list URL and the public keys from ``network keys show --json``, or
* the published ``embedded_server_list`` (``-serverList``), with signature checks on,

and must come up, fetch a page, show the sponsor's home page and learn the discovery
server from a handshake (then use it once the others are gone). The servers' own events
confirm each entry source (REMOTE, EMBEDDED, DISCOVERY) and the remote list download. A
remote list signed by another key (under its own digest or the network's) and entries
under a wrong entry-signing key are refused; a new export reaches running servers.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from onehop.core.authpackage import compress_zlib, generate_rsa_keypair, make_package

from tests.helpers.net import free_port
from tests.helpers.waiting import poll_until

from .harness import ONEHOP, Process, Processes, PsiphonClient, WebServer, socks5_get, wait_for_port

HOME_PAGE = "https://acme.example/welcome"
TUNNEL_TIMEOUT = 60.0


def network_cli(db: str, *args: str) -> dict | list:
    """``onehop network --db DB ARGS --json``; the parsed output."""
    done = subprocess.run([*ONEHOP, "network", "--db", db, *args, "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"onehop network {' '.join(args)}: {done.stderr or done.stdout}"
    return json.loads(done.stdout)


def entry_fields(encoded_hex: str) -> dict:
    """The JSON of an encoded server entry (hex of ``0 0 0 0 <json>``)."""
    text = bytes.fromhex(encoded_hex.strip()).decode("utf-8")
    return json.loads(text.split(" ", 4)[4])


@dataclass
class Network:
    """The built network, its running servers and the web server publishing its lists."""

    root: Path
    db: str
    sponsor_id: str
    channel_id: str
    keys: dict
    export_dir: Path
    servers: dict[str, dict]                  # server id -> the CLI's record
    diagnostic_ids: dict[str, str]            # Psiphon's diagnosticID (tag[:8]) -> server id
    web: WebServer
    remote_list_url: str                      # as publish's manifest gives it
    embedded_list_path: str
    procs: Processes = field(default_factory=Processes)
    running: dict[str, Process] = field(default_factory=dict)

    def start(self, server_id: str) -> None:
        directory = self.export_dir / server_id
        log = self.root / "logs" / f"{server_id}.{len(self.procs._all)}.log"
        self.running[server_id] = self.procs.start(
            [*ONEHOP, "server", "run", "--config", directory / "server.json"], log, cwd=directory)
        record = self.servers[server_id]
        for port in (record["ossh_port"], record["ssh_port"]):
            if port:
                wait_for_port(port, host=record["ip_address"])

    def stop(self, server_id: str) -> None:
        self.running.pop(server_id).stop()

    def ensure_running(self) -> None:
        for server_id in self.servers:
            if server_id not in self.running or not self.running[server_id].alive():
                self.running.pop(server_id, None)
                self.start(server_id)

    def events(self, server_id: str) -> list[dict]:
        """The server's event log, where export's LogFilename puts it."""
        path = self.export_dir / "logs" / server_id / "events.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines if line.endswith("}")]

    def embedded_ids(self) -> list[str]:
        return [s for s, r in self.servers.items() if r["embedded"]]

    def discovery_ids(self) -> list[str]:
        return [s for s, r in self.servers.items() if r["kind"] == "discovery"]

    def client_config(self, **extra) -> dict:
        return {"PropagationChannelId": self.channel_id, "SponsorId": self.sponsor_id,
                "LimitTunnelProtocols": ["OSSH"],
                "ServerEntrySignaturePublicKey": self.keys["ServerEntrySignaturePublicKey"], **extra}


def _build(root: Path) -> tuple[str, dict]:
    db = f"sqlite:///{root / 'network.db'}"
    network_cli(db, "init", "--rsa-bits", "2048")
    sponsor = network_cli(db, "sponsor", "add", "--name", "Acme", "--home-page", HOME_PAGE)
    channel = network_cli(db, "channel", "add", "--name", "interop-1")
    network_cli(db, "host", "add", "--name", "lo1", "--ip", "127.0.0.1", "--region", "DE")
    servers = {}
    for ip, kind in (("127.0.0.1", ()), ("127.0.0.2", ("--discovery-days", "3")),
                     ("127.0.0.3", ("--ssh-port", str(free_port("127.0.0.3"))))):
        record = network_cli(db, "server", "add", "--host", "lo1", "--channel", channel["id"], "--ip", ip,
                             "--ossh-port", str(free_port(ip)), "--allow-bogons", *kind)
        servers[record["id"]] = record
    return db, {"sponsor": sponsor, "channel": channel, "servers": servers}


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    root = tmp_path_factory.mktemp("network")
    (root / "logs").mkdir()
    db, made = _build(root)
    keys = network_cli(db, "keys", "show")
    export_dir, publish_dir = root / "export", root / "publish"
    exported = network_cli(db, "export", "--out", str(export_dir))
    assert sorted(exported["servers"]) == sorted(made["servers"])
    web = WebServer()  # first, so publish can embed its address in the manifest's URLs
    manifest = network_cli(db, "publish", "--to", str(publish_dir), "--no-builds", "--base-url", web.url("/pub"))
    web.files.update({"/pub/" + p.relative_to(publish_dir).as_posix(): p.read_bytes()
                      for p in publish_dir.rglob("*") if p.is_file()})
    by_kind = {item["kind"]: item for item in manifest if item["channel"] == made["channel"]["id"]}
    diagnostic_ids = {entry_fields((export_dir / s / "server-entry.dat").read_text())["tag"][:8]: s
                      for s in made["servers"]}
    net = Network(root=root, db=db, sponsor_id=made["sponsor"]["id"], channel_id=made["channel"]["id"],
                  keys=keys, export_dir=export_dir, servers=made["servers"], diagnostic_ids=diagnostic_ids,
                  web=web, remote_list_url=by_kind["remote-server-list"]["url"],
                  embedded_list_path=urlsplit(by_kind["embedded-server-list"]["url"]).path)
    try:
        net.ensure_running()
        yield net
    finally:
        net.procs.stop_all()
        web.close()


@pytest.fixture
def net(network):
    """The module's network with every server running (a test may have stopped some)."""
    network.ensure_running()
    return network


def connected_server(client: PsiphonClient, net: Network) -> str:
    """The onehop server ID of the client's first active tunnel."""
    notice = client.wait_notice("ActiveTunnel", timeout=TUNNEL_TIMEOUT)
    return net.diagnostic_ids[notice["data"]["diagnosticID"]]


def server_tunnel_event(client: PsiphonClient, net: Network, server_id: str) -> dict:
    """Stop the client; the server's ``server_tunnel`` event of its session (logged at close)."""
    session_id = client.wait_notice("SessionId")["data"]["sessionId"]
    client.process.stop()
    return poll_until(lambda: next((e for e in net.events(server_id) if e.get("event_name") == "server_tunnel"
                                  and e.get("session_id") == session_id), None),
                    20, f"{server_id}'s server_tunnel event")


def assert_page_through(client: PsiphonClient, page) -> None:
    web, path, body = page
    client.wait_tunnel(TUNNEL_TIMEOUT)
    assert socks5_get(client.socks_port, "127.0.0.1", web.port, path) == body


def remote_list_config(net: Network, url: str, **extra) -> dict:
    return net.client_config(
        RemoteServerListURLs=[{"URL": base64.b64encode(url.encode()).decode(), "OnlyAfterAttempts": 0}],
        RemoteServerListSignaturePublicKey=net.keys["RemoteServerListSignaturePublicKey"],
        DisableRemoteServerListFetcher=False, **extra)


# ---------------------------------------------------------------------------------- tests


def test_remote_server_list_alone_bootstraps_a_tunnel(net, procs, tmp_path, page):
    client = PsiphonClient(procs, tmp_path / "cli", remote_list_config(net, net.remote_list_url))
    client.wait_notice("RemoteServerListResourceDownloaded", timeout=TUNNEL_TIMEOUT)  # its URL is redacted
    assert_page_through(client, page)
    server_id = connected_server(client, net)
    assert server_id in net.embedded_ids()
    assert any(r[1] == urlsplit(net.remote_list_url).path for r in net.web.requests)
    event = server_tunnel_event(client, net, server_id)
    assert event["server_entry_source"] == "REMOTE" and event["handshake_completed"] is True
    # the client reports its download in a status request (at the latest when it stops); the
    # server logs it, without the URL's address
    stat = poll_until(lambda: next((e for e in net.events(server_id) if e.get("event_name") == "remote_server_list"
                                  and e.get("session_id") == event["session_id"]), None),
                    20, "the remote_server_list event")
    assert stat["authenticated"] is True and stat["tunneled"] is False
    # psiphon-status was accepted, and its record carries the sponsor and channel the client sent
    assert (stat["sponsor_id"], stat["propagation_channel_id"]) == (net.sponsor_id.upper(), net.channel_id.upper())
    assert stat["bytes"] == len(net.web.files[urlsplit(net.remote_list_url).path])
    assert "127.0.0.1" not in json.dumps(stat)


def test_embedded_server_list_bootstraps_a_tunnel_with_signatures_checked(net, procs, tmp_path, page):
    list_file = tmp_path / "embedded_server_list"
    list_file.write_bytes(net.web.files[net.embedded_list_path])
    lines = list_file.read_text().split()
    assert sorted(entry_fields(line)["ipAddress"] for line in lines) == \
        sorted(net.servers[s]["ip_address"] for s in net.embedded_ids())
    assert all(entry_fields(line).get("signature") for line in lines)
    client = PsiphonClient(procs, tmp_path / "cli", net.client_config(), args=("-serverList", str(list_file)))
    assert_page_through(client, page)
    server_id = connected_server(client, net)
    assert server_id in net.embedded_ids()
    assert not [n for n in client.notices("Warning") if "verify signature failed" in json.dumps(n)]
    assert server_tunnel_event(client, net, server_id)["server_entry_source"] == "EMBEDDED"


def test_embedded_list_entries_carry_the_ssh_capability_the_network_gave(net, procs, tmp_path, page):
    list_file = tmp_path / "embedded_server_list"
    list_file.write_bytes(net.web.files[net.embedded_list_path])
    (ssh_server,) = [s for s, r in net.servers.items() if r["ssh_port"]]
    client = PsiphonClient(procs, tmp_path / "cli", {**net.client_config(), "LimitTunnelProtocols": ["SSH"]},
                           args=("-serverList", str(list_file)))
    assert_page_through(client, page)
    assert connected_server(client, net) == ssh_server


def test_embedded_list_under_a_wrong_entry_signing_key_is_discarded(net, procs, tmp_path):
    """The check above is real: under another Ed25519 key every embedded entry fails
    verification and is deleted, and no tunnel comes up."""
    list_file = tmp_path / "embedded_server_list"
    list_file.write_bytes(net.web.files[net.embedded_list_path])
    wrong_key = base64.b64encode(os.urandom(32)).decode()
    client = PsiphonClient(procs, tmp_path / "cli", {**net.client_config(), "ServerEntrySignaturePublicKey": wrong_key},
                           args=("-serverList", str(list_file)))
    poll_until(lambda: len([n for n in client.notices("Warning")
                          if "verify signature failed" in n["data"].get("message", "")]) >= len(net.embedded_ids()),
             TUNNEL_TIMEOUT, "a failed verification for every embedded entry")
    assert not client.notices("ConnectingServer")
    assert not [n for n in client.notices("Tunnels") if n["data"].get("count", 0) > 0]


def test_handshake_discovery_teaches_the_client_a_server_it_did_not_have(net, procs, tmp_path, page):
    list_file = tmp_path / "embedded_server_list"
    list_file.write_bytes(net.web.files[net.embedded_list_path])
    first = PsiphonClient(procs, tmp_path / "first", net.client_config(), args=("-serverList", str(list_file)))
    assert_page_through(first, page)
    candidates = first.wait_notice("CandidateServers")["data"]
    assert candidates["count"] == len(net.embedded_ids())
    (discovery_id,) = net.discovery_ids()
    # the handshake's discovery is stored before the tunnel is announced; stop cleanly so the
    # data store is closed, then leave the client only the server it did not start with
    first.process.stop()
    for server_id in net.embedded_ids():
        net.stop(server_id)
    second = PsiphonClient(procs, tmp_path / "second", {**net.client_config(),
                                                        "DataRootDirectory": str(tmp_path / "first" / "data")})
    assert second.wait_notice("CandidateServers")["data"]["count"] == len(net.servers)
    assert_page_through(second, page)
    assert connected_server(second, net) == discovery_id
    assert server_tunnel_event(second, net, discovery_id)["server_entry_source"] == "DISCOVERY"


def test_homepage_notice_carries_the_sponsors_home_page(net, procs, tmp_path):
    client = PsiphonClient(procs, tmp_path / "cli", remote_list_config(net, net.remote_list_url))
    client.wait_tunnel(TUNNEL_TIMEOUT)
    notice = client.wait_notice("Homepage", timeout=10)
    assert notice["data"]["url"] == HOME_PAGE


@pytest.mark.parametrize("claimed_key", ["its own", "the network's"])
def test_remote_list_signed_by_another_key_is_refused(net, procs, tmp_path, claimed_key):
    """The same entries, signed by a stranger's key: naming that key (the digest check refuses
    it) or claiming the network's key (the RSA signature check refuses it)."""
    private_pem, public_b64 = generate_rsa_keypair(2048)
    if claimed_key == "the network's":
        public_b64 = net.keys["RemoteServerListSignaturePublicKey"]
    text = net.web.files[net.embedded_list_path].decode("ascii").strip()
    forged_path = f"/forged-{os.urandom(4).hex()}/server_list_compressed"
    net.web.files[forged_path] = compress_zlib(make_package(text, private_pem, public_b64))
    client = PsiphonClient(procs, tmp_path / "cli", remote_list_config(net, net.web.url(forged_path)))
    expected = "unexpected signing public key digest" if claimed_key == "its own" else "verification"
    client.wait_notice("Warning", lambda d: "failed to read remote server list" in d.get("message", "")
                       and expected in d["message"], TUNNEL_TIMEOUT)
    assert any(r[1] == forged_path for r in net.web.requests)
    # nothing was imported: every later establishment round still has no candidate at all
    rounds = client.notices("CandidateServers")
    assert rounds and all(n["data"]["count"] == 0 for n in rounds)
    assert not client.notices("ConnectingServer") and not client.notices("ConnectedServer")
    assert not [n for n in client.notices("Tunnels") if n["data"].get("count", 0) > 0]


def test_a_new_export_reaches_the_running_servers_without_a_restart(net, procs, tmp_path):
    """The operator adds a home page and exports again; the running servers reload psinet.json
    and Psiphon's next handshake carries both pages."""
    added = "https://acme.example/second"
    network_cli(net.db, "sponsor", "homepage", "--sponsor", net.sponsor_id, "--add", added)
    try:
        exported = network_cli(net.db, "export", "--out", str(net.export_dir))
        assert "psinet.json" in exported["written"]
        assert not [p for p in exported["written"] if p.endswith("server.json")]
        pids = {s: p.proc.pid for s, p in net.running.items()}
        client = PsiphonClient(procs, tmp_path / "cli", remote_list_config(net, net.remote_list_url))
        client.wait_tunnel(TUNNEL_TIMEOUT)
        poll_until(lambda: len(client.notices("Homepage")) >= 2, 10, "two Homepage notices")
        assert {n["data"]["url"] for n in client.notices("Homepage")} == {HOME_PAGE, added}
        assert {s: p.proc.pid for s, p in net.running.items()} == pids
        assert all(p.alive() for p in net.running.values())
    finally:
        network_cli(net.db, "sponsor", "homepage", "--sponsor", net.sponsor_id, "--remove", added)
        network_cli(net.db, "export", "--out", str(net.export_dir))
