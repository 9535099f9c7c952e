"""onehop's client against Psiphon's own server (psiphond), live on loopback.

Every test fetches a page through the tunnel and checks its bytes. Covered: OSSH, OSSH with
a prefix (psiphond answering with its own configured prefix, split from the rest) and SSH,
several connections each, with the API in packed CBOR and in JSON; home pages and
discovery from a psiphond psinet database, the discovered entry being a second, real
psiphond that the client then uses; and psiphond accepting our connected and status
requests with the sponsor and channel we sent.
"""

from __future__ import annotations

import base64
import json
import socket
import sqlite3
import threading
from collections import Counter
from datetime import datetime, timedelta, UTC
from pathlib import Path

import pytest

from onehop.core.authpackage import compress_zlib, generate_rsa_keypair, make_package

from tests.helpers.waiting import poll_until

from .harness import OnehopClient, Processes, Psiphond, WebServer, socks5_get

SPONSOR = "0123456789ABCDEF"
CHANNEL = "FEDCBA9876543210"
CONNECTIONS = 5  # per protocol: seeds, paddings, prefixes and split delays differ per connection
SERVER_PREFIX = "HTTP/1\\.1 200 OK\\r\\nServer: nginx\\r\\nContent-Type: text/html\\r\\n\\r\\n"


def entry_tag(encoded: str) -> str:
    """The tag of a hex-encoded server entry (``0 0 0 0 <json>``)."""
    return json.loads(bytes.fromhex(encoded).decode().split(" ", 4)[4])["tag"]


def with_port(encoded: str, field: str, port: int) -> str:
    """The hex-encoded entry with ``field`` (a port) changed."""
    parts = bytes.fromhex(encoded).decode().split(" ", 4)
    fields = json.loads(parts[4])
    fields[field] = port
    return " ".join([*parts[:4], json.dumps(fields)]).encode().hex()


class Tap:
    """A loopback TCP relay to ``port`` that keeps the first bytes each connection's server
    sent (threads end when either side closes; the listener closes with ``close``)."""

    KEEP = 512

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.downstream_heads: list[bytearray] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            head = bytearray()
            self.downstream_heads.append(head)
            threading.Thread(target=self._pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, head), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, head: bytearray | None) -> None:
        src.settimeout(None)
        try:
            while data := src.recv(65536):
                if head is not None and len(head) < self.KEEP:
                    head += data[:self.KEEP - len(head)]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def client_config(directory: Path, **extra) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "client.json"
    path.write_text(json.dumps({"SponsorId": SPONSOR, "PropagationChannelId": CHANNEL,
                                "ClientPlatform": "Linux_interop", "ClientVersion": "7",
                                "EstablishTunnelPausePeriodSeconds": 1, **extra}))
    return path


def start_client(procs: Processes, directory: Path, args: list[str], **config) -> OnehopClient:
    return OnehopClient(procs, directory, ["--config", str(client_config(directory, **config)), *args])


def fetch(client: OnehopClient, page) -> None:
    web, path, body = page
    client.wait_tunnel(timeout=90)  # five clients start at once: slow on a busy CI machine
    assert socks5_get(client.socks_port, "127.0.0.1", web.port, path) == body


def stored_entries(data_dir: Path) -> dict[str, tuple[str, str]]:
    """ip address -> (source, tag), from the client's datastore (after the client stopped)."""
    with sqlite3.connect(data_dir / "datastore.sqlite") as db:
        return {ip: (source, tag) for ip, source, tag in
                db.execute("SELECT ip_address, source, tag FROM server_entries")}


def wait_events(server: Psiphond, name: str, count: int, timeout: float = 15.0) -> list[dict]:
    return poll_until(lambda: len(server.events(name)) >= count and server.events(name), timeout,
                    f"{count} psiphond {name} events (have {len(server.events(name))})")


# ----------------------------------------------------------------------------- protocols


@pytest.mark.parametrize("encoding", ["cbor", "json"])
def test_every_protocol_many_times(tmp_path, procs, page, encoding):
    server = Psiphond(procs, tmp_path / "psiphond", tactics_parameters={
        "ServerOSSHPrefixSpecs": {"http-get": [["", SERVER_PREFIX]]},
        "OSSHPrefixSplitMinDelay": "10ms", "OSSHPrefixSplitMaxDelay": "30ms"})
    # OSSH-PREFIX goes through a tap that sees psiphond's answer: its configured prefix.
    tap = Tap(server.ports["OSSH"])
    entry_files = {"OSSH-PREFIX": tmp_path / "tapped-entry.dat", "OSSH": tmp_path / "entry.dat"}
    entry_files["OSSH-PREFIX"].write_text(with_port(server.entry, "sshObfuscatedPort", tap.port))
    entry_files["OSSH"].write_text(server.entry)
    try:
        for protocol in ("OSSH", "OSSH-PREFIX", "SSH"):
            entry_file = entry_files.get(protocol, entry_files["OSSH"])
            clients = [start_client(procs, tmp_path / f"{protocol}-{i}",
                                    ["--protocol", protocol, "--target-server-entry", f"@{entry_file}"],
                                    TargetAPIEncoding=encoding)
                       for i in range(CONNECTIONS)]
            for client in clients:
                fetch(client, page)
                assert client.wait_notice("ActiveTunnel")["data"]["protocol"] == protocol
            for client in clients:
                assert client.process.stop() == 0, client.process.output()[-1500:]
    finally:
        tap.close()
    assert len(tap.downstream_heads) == CONNECTIONS
    assert all(head.startswith(b"HTTP/1.1 200 OK\r\nServer: nginx\r\n") for head in tap.downstream_heads)

    tunnels = wait_events(server, "server_tunnel", 3 * CONNECTIONS)
    assert all(t["handshake_completed"] for t in tunnels)
    assert all((t["sponsor_id"], t["propagation_channel_id"]) == (SPONSOR, CHANNEL) for t in tunnels)
    kinds = Counter((t["relay_protocol"], t.get("ossh_prefix", "")) for t in tunnels)
    assert kinds == {("OSSH", ""): CONNECTIONS, ("OSSH", "http-get"): CONNECTIONS, ("SSH", ""): CONNECTIONS}
    assert len(server.events("unique_user")) == 3 * CONNECTIONS  # fresh clients: last_connected None
    assert server.problems() == []


# ----------------------------------------------------------------------------- psinet


def psinet_database(path: Path, discovered_entry: str, home_pages: list[str]) -> None:
    now = datetime.now(UTC)
    path.write_text(json.dumps({
        "sponsors": {SPONSOR: {"id": SPONSOR, "home_pages": {
            "None": [{"region": "None", "url": url} for url in home_pages]}}},
        "client_versions": {},
        "default_sponsor_id": SPONSOR,
        "discovery_servers": [{
            "discovery_date_range": [(now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                     (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")],
            "encoded_server_entry": discovered_entry}],
    }, indent=2))


def test_home_pages_and_a_discovered_server_that_works(tmp_path, procs, page):
    # The server to be discovered listens on another loopback address: the client's
    # datastore keys entries by IP address, as Psiphon's does.
    hidden = Psiphond(procs, tmp_path / "hidden", protocols=("OSSH",), ip="127.0.0.2")
    home_pages = ["https://home.example.org/?client_region=XX", "https://second.example.net/welcome"]
    psinet_database(tmp_path / "psinet.json", hidden.entry, home_pages)
    known = Psiphond(procs, tmp_path / "known", protocols=("OSSH",),
                       config_overrides={"PsinetDatabaseFilename": str(tmp_path / "psinet.json")})
    server_list = tmp_path / "server-list.dat"
    server_list.write_text(known.entry + "\n")

    first = start_client(procs, tmp_path / "first", ["--server-list", str(server_list)])
    fetch(first, page)
    # Two entries come back: the discovered one, and psiphond's own signed entry, which it
    # returns because ours was unsigned (missing_server_entry_signature); Psiphon's client
    # stores both with the source DISCOVERY too.
    first.wait_notice("Info", lambda d: d.get("message") == "discovered server entries" and d["imported"] == 2)
    got = sorted(n["data"]["url"] for n in first.notices("Homepage"))
    assert got == sorted(["https://home.example.org/?client_region=None", home_pages[1]])
    assert first.process.stop() == 0
    assert stored_entries(first.directory / "data") == {"127.0.0.1": ("DISCOVERY", entry_tag(known.entry)),
                                                        "127.0.0.2": ("DISCOVERY", entry_tag(hidden.entry))}

    # With the first server gone, the same data directory reaches the discovered one; with a
    # prefix this time, which psiphond (no ServerOSSHPrefixSpecs) answers with random bytes.
    known.process.stop()
    second = OnehopClient(procs, first.directory,
                          ["--config", str(first.directory / "client.json"), "--protocol", "OSSH-PREFIX"])
    fetch(second, page)
    assert second.wait_notice("ActiveTunnel")["data"]["diagnosticID"] == entry_tag(hidden.entry)[:8]
    assert second.process.stop() == 0
    tunnels = wait_events(hidden, "server_tunnel", 1)
    assert tunnels[0]["server_entry_source"] == "DISCOVERY" and tunnels[0]["sponsor_id"] == SPONSOR
    assert tunnels[0]["ossh_prefix"] == "http-get"
    assert known.problems() == [] and hidden.problems() == []


# ----------------------------------------------------------------------------- API log


def signed_server_list(entries: list[str]) -> tuple[bytes, str]:
    private, public = generate_rsa_keypair(2048)
    return compress_zlib(make_package("\n".join(entries), private, public)), public


@pytest.mark.parametrize("encoding", ["cbor", "json"])
def test_psiphond_logs_our_connected_and_status_requests(tmp_path, procs, page, encoding):
    server = Psiphond(procs, tmp_path / "psiphond", protocols=("OSSH",))
    package, public_key = signed_server_list([server.entry])
    lists = WebServer({"/list": package})
    try:
        server_list = tmp_path / "server-list.dat"
        server_list.write_text(server.entry + "\n")
        config = dict(TargetAPIEncoding=encoding, RemoteServerListSignaturePublicKey=public_key,
                      RemoteServerListURLs=[{"URL": base64.b64encode(lists.url("/list").encode()).decode(),
                                             "OnlyAfterAttempts": 0}])
        client = start_client(procs, tmp_path / "client", ["--server-list", str(server_list)], **config)
        fetch(client, page)
        # The remote list is fetched through the tunnel; its stat goes out in a status
        # request 5-10 s later, which psiphond logs as a remote_server_list event.
        client.wait_notice("RemoteServerListResourceDownloaded", timeout=20)
        [stat] = wait_events(server, "remote_server_list", 1, timeout=20)
        assert client.process.stop() == 0

        # A second run with the same data directory, aimed at the server as a target,
        # reports the connected timestamp the first one got: psiphond counts the user once.
        again = OnehopClient(procs, client.directory, ["--config", str(client.directory / "client.json"),
                                                       "--target-server-entry", server.entry])
        fetch(again, page)
        assert again.process.stop() == 0
    finally:
        lists.close()

    [unique] = server.events("unique_user")
    tunnels = wait_events(server, "server_tunnel", 2)
    for event in (unique, stat, *tunnels):
        assert (event["sponsor_id"], event["propagation_channel_id"]) == (SPONSOR, CHANNEL), event
        assert (event["client_platform"], event["client_version"]) == ("Linux_interop", 7), event
    assert unique["last_connected"] == "None"
    assert stat["url"] == lists.url("/list") and stat["tunneled"] is True and stat["authenticated"] is True
    # psiphond's connected_timestamp is the hour of the first run's connected request.
    reported = datetime.strptime(tunnels[1].get("last_connected", "missing"), "%Y-%m-%dT%H:%M:%SZ")
    age = datetime.now(UTC) - reported.replace(tzinfo=UTC)
    assert timedelta(0) <= age < timedelta(hours=1, minutes=5), tunnels[1]
    assert server.problems() == []
