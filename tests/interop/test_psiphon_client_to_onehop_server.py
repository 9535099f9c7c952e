"""Psiphon's console client against ``onehop server run``, on loopback, many times over.

Psiphon's client draws a random SSH KEX, cipher and MAC for every tunnel (and, for plain
SSH, adjusts them to what it predicts a Psiphon server would offer), so one successful
connection proves little. Each protocol (OSSH, OSSH behind an HTTP prefix, SSH) is
connected ``ROUNDS`` times, each round a fresh client process with a fresh data
directory (so a new SSH handshake and a new API handshake), alternating the API encoding
between packed CBOR (Psiphon's default) and JSON. Every round fetches a page through the
tunnel and checks its bytes, then stops the client with SIGTERM so that it sends its
final ``psiphon-status``.

A small TCP relay in front of each listener records what the client sent first: it
proves the prefix really was on the wire, counts the connection attempts (a failed
negotiation that the client silently retried would show up as an extra connection), and
lets the test read the client's KEXINIT (de-obfuscated with onehop's own OSSH code), so
each round's negotiated KEX, cipher and MAC are recorded in ``rounds.json``.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from onehop.core.ossh import DataReceived, ServerObfuscator
from onehop.core.sansio import drain
from onehop.tunnel.algorithms import SERVER_ENCRYPTION_ALGS, SERVER_KEX_ALGS, SERVER_MAC_ALGS

from .harness import OnehopServer, PsiphonClient, Processes, WebServer, socks5_get

#: Connections per protocol (each a fresh Psiphon client); ONEHOP_INTEROP_ROUNDS overrides.
ROUNDS = int(os.environ.get("ONEHOP_INTEROP_ROUNDS", "20"))
#: Clients running at once: the rounds are mostly waiting, even on 2 cores.
PARALLEL = 4
SPONSOR_ID, CHANNEL_ID = "0123456789ABCDEF", "FEDCBA9876543210"
#: The prefix as it must appear on the wire, and the regex generator that makes it.
PREFIX = b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"
PREFIX_SPECS = {"HTTP": [["", r"GET / HTTP/1\.1\r\nHost: example\.org\r\n\r\n"]]}
RECORD_BYTES = 16384


# ------------------------------------------------------------------------------ relay


class Relay:
    """A TCP relay 127.0.0.1:port -> 127.0.0.1:target that keeps the first bytes each way."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[dict] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._closed.is_set():
            try:
                down, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            record = {"up": bytearray(), "down": bytearray(), "opened": time.monotonic(), "closed": None}
            with self._lock:
                self.connections.append(record)
            threading.Thread(target=self._pipe, args=(down, record), daemon=True).start()

    def _pipe(self, down: socket.socket, record: dict) -> None:
        try:
            up = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        except OSError:
            down.close()
            return
        peers = {down: (up, record["up"]), up: (down, record["down"])}
        try:
            self._relay(down, up, peers)
        finally:
            record["closed"] = time.monotonic()

    def _relay(self, down: socket.socket, up: socket.socket, peers: dict) -> None:
        with selectors.DefaultSelector() as sel, down, up:
            for sock in peers:
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ)
            while not self._closed.is_set():
                for key, _ in sel.select(0.5):
                    other, seen = peers[key.fileobj]  # type: ignore[index]
                    try:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        return
                    if len(seen) < RECORD_BYTES:
                        seen += data[:RECORD_BYTES - len(seen)]
                    try:
                        other.setblocking(True)
                        other.sendall(data)
                        other.setblocking(False)
                    except OSError:
                        return

    def count(self) -> int:
        with self._lock:
            return len(self.connections)

    def close(self) -> None:
        self._closed.set()
        self.listener.close()


# ------------------------------------------------------------------------- SSH parsing


def _name_lists(payload: bytes) -> list[list[str]]:
    """The ten name-lists of an SSH_MSG_KEXINIT payload."""
    assert payload[0] == 20, f"not a KEXINIT (message {payload[0]})"
    offset, lists = 17, []
    for _ in range(10):
        (length,) = struct.unpack_from(">I", payload, offset)
        text = payload[offset + 4:offset + 4 + length].decode("ascii")
        lists.append(text.split(",") if text else [])
        offset += 4 + length
    return lists


def kexinit_lists(ssh_bytes: bytes) -> list[list[str]]:
    """Skip identification lines, then parse the first binary packet as a KEXINIT."""
    rest = ssh_bytes
    while True:
        line, sep, rest = rest.partition(b"\r\n")
        assert sep, "no SSH identification line"
        if line.startswith(b"SSH-"):
            break
    length, padding = struct.unpack_from(">IB", rest)
    return _name_lists(rest[5:4 + length - padding])


def negotiate(client: list[str], server: list[str]) -> str | None:
    return next((name for name in client if name in server), None)


def negotiated(client_lists: list[list[str]], server_lists: list[list[str]] | None = None) -> dict:
    """RFC 4253 7.1: the first client algorithm the server also offers, per kind."""
    server = server_lists or [list(SERVER_KEX_ALGS), [], list(SERVER_ENCRYPTION_ALGS), [], list(SERVER_MAC_ALGS)]
    cipher = negotiate(client_lists[2], server[2])
    aead = cipher is not None and ("gcm" in cipher or "poly1305" in cipher)
    return {"kex": negotiate(client_lists[0], server[0]), "cipher": cipher,
            "mac": "(aead)" if aead else negotiate(client_lists[4], server[4]),
            "offered": {"kex": client_lists[0], "cipher": client_lists[2], "mac": client_lists[4]}}


def deobfuscated_client_bytes(wire: bytes, keyword: str) -> bytes:
    """The SSH bytes inside a client's OSSH stream (prefix, seed message and padding removed)."""
    obfuscator = ServerObfuscator(keyword, replay_check=lambda seed: True, random_bytes=os.urandom)
    obfuscator.receive_data(wire)
    plain = b""
    for event in drain(obfuscator):
        if isinstance(event, DataReceived):
            plain += event.data
    return plain


# ------------------------------------------------------------------------------- rig


def entry_via(entry_hex: str, ports: dict[str, int]) -> str:
    """The server entry with its ports replaced (clients dial the relays)."""
    head, _, body = bytes.fromhex(entry_hex).decode("utf-8").partition("0 0 0 0 ")
    assert head == "", "unexpected server entry framing"
    fields = json.loads(body)
    fields["sshObfuscatedPort"], fields["sshPort"] = ports["OSSH"], ports["SSH"]
    return ("0 0 0 0 " + json.dumps(fields)).encode("utf-8").hex()


class Rig:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs = Processes()
        self.body = os.urandom(20000).hex().encode()
        self.web = WebServer({"/page.txt": self.body})
        self.server = OnehopServer(self.procs, root / "srv", log_level="DEBUG")
        self.relays = {name: Relay(port) for name, port in self.server.ports.items()}
        self.entry = entry_via(self.server.entry, {n: r.port for n, r in self.relays.items()})
        self.rounds: list[dict] = []
        self.connections: list[dict] = []

    def close(self) -> None:
        self.procs.stop_all()
        for relay in self.relays.values():
            relay.close()
        self.web.close()
        (self.root / "rounds.json").write_text(json.dumps(
            {"rounds": self.rounds, "connections": self.connections}, indent=1))


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    rig = Rig(tmp_path_factory.mktemp("psiphon-to-onehop"))
    yield rig
    rig.close()


def client_config(rig: Rig, protocol: str, encoding: str) -> dict:
    config = {"SponsorId": SPONSOR_ID, "PropagationChannelId": CHANNEL_ID, "TargetServerEntry": rig.entry,
              "LimitTunnelProtocols": ["SSH" if protocol == "SSH" else "OSSH"],
              "EstablishTunnelPausePeriodSeconds": 1}
    if protocol == "OSSH-PREFIX":
        # A spec is chosen by scope (the dial port); "" is any port, and without it none is.
        config.update(OSSHPrefixSpecs=PREFIX_SPECS, OSSHPrefixScopedSpecNames={"": list(PREFIX_SPECS)},
                      OSSHPrefixProbability=1.0)
    else:
        config["OSSHPrefixProbability"] = 0.0
    if encoding == "json":
        config["TargetAPIEncoding"] = "json"
    return config


def one_round(rig: Rig, protocol: str, number: int) -> dict:
    """A fresh Psiphon client: tunnel, one page, SIGTERM (final status), and what it did."""
    encoding = "cbor" if number % 2 == 0 else "json"
    procs = Processes()
    try:
        client = PsiphonClient(procs, rig.root / f"{protocol}-{number:02d}", client_config(rig, protocol, encoding))
        client.wait_tunnel(timeout=45)
        got = socks5_get(client.socks_port, "127.0.0.1", rig.web.port, "/page.txt")
        session_id = client.wait_notice("SessionId")["data"]["sessionId"]
    finally:
        procs.stop_all()  # SIGTERM: the client sends a final psiphon-status on its way out
    warnings = [n["data"].get("message", "") for n in client.notices() if n.get("noticeType") in ("Warning", "Error")]
    return {"protocol": protocol, "round": number, "encoding": encoding, "session_id": session_id,
            "page_ok": got == rig.body, "exit_code": client.process.proc.returncode,
            "api_warnings": [w for w in warnings if re.search(r"Request|request|status|connected", w)]}


def run_rounds(rig: Rig, protocol: str) -> tuple[list[dict], list[dict]]:
    """ROUNDS fresh clients, PARALLEL at a time: (one result per round, one record per connection)."""
    relay = rig.relays["SSH" if protocol == "SSH" else "OSSH"]
    before = relay.count()
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(lambda n: one_round(rig, protocol, n), range(ROUNDS)))
    connections = relay.connections[before:]
    keyword = rig.server.config["ObfuscatedSSHKey"]
    for connection in connections:
        wire = bytes(connection["up"])
        if protocol == "SSH":
            ssh, server_lists = wire, kexinit_lists(bytes(connection["down"]))
        else:
            ssh, server_lists = deobfuscated_client_bytes(wire, keyword), None
        connection["negotiated"] = negotiated(kexinit_lists(ssh), server_lists)
        connection["prefix_on_wire"] = wire.startswith(PREFIX)
    failed = [c["negotiated"] for c in connections if None in (c["negotiated"]["kex"], c["negotiated"]["cipher"],
                                                                c["negotiated"]["mac"])]
    assert not failed, f"{len(failed)} of {len(connections)} {protocol} key exchanges cannot succeed: {failed}"
    # A failed attempt that the client silently retried would show up as an extra connection.
    assert len(connections) == ROUNDS, (
        f"{len(connections)} connections for {ROUNDS} {protocol} tunnels: some attempt failed and was retried: "
        + repr([(len(c["up"]), len(c["down"]), c["closed"] and round(c["closed"] - c["opened"], 2))
                for c in connections]))
    # Rounds ran in parallel: connections are listed in the order they were made.
    made = [{"protocol": protocol, "negotiated": c["negotiated"], "prefix_on_wire": c["prefix_on_wire"]}
            for c in connections]
    rig.rounds += results
    rig.connections += made
    return results, made


# ------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("protocol", ["OSSH", "OSSH-PREFIX", "SSH"])
def test_every_connection_succeeds_and_fetches_the_page(rig, protocol):
    results, connections = run_rounds(rig, protocol)
    assert all(r["page_ok"] for r in results)
    assert [r["api_warnings"] for r in results] == [[] for _ in results]
    assert {r["encoding"] for r in results} == ({"cbor", "json"} if ROUNDS > 1 else {"cbor"})
    for c in connections:
        assert c["negotiated"]["kex"] and c["negotiated"]["cipher"] and c["negotiated"]["mac"], c
    # The prefix is on the wire exactly when asked for, and the server saw it.
    assert [c["prefix_on_wire"] for c in connections] == [protocol == "OSSH-PREFIX"] * ROUNDS
    tunnels = {e["session_id"]: e for e in rig.server.events("server_tunnel")}
    mine = [tunnels.get(r["session_id"]) for r in results]
    assert None not in mine, "a round's tunnel is missing from the server's events"
    assert {e["relay_protocol"] for e in mine} == {"SSH" if protocol == "SSH" else "OSSH"}
    assert all(e["handshake_completed"] for e in mine)
    assert all(bool(e.get("ossh_prefix")) == (protocol == "OSSH-PREFIX") for e in mine), mine


def test_connected_requests_are_accepted_and_logged_with_sponsor_and_channel(rig):
    """Every round's psiphon-connected (CBOR and JSON) is accepted and counted as a unique user
    with the client's sponsor and channel; nothing is rejected.

    Not covered: psiphon-status. Psiphon's client skips a status request whose payload is
    empty, and a fresh client has nothing to report (no host bytes, no persistent stats, no
    server entries old enough for a prune check), even in its final status on SIGTERM."""
    if not rig.rounds:
        run_rounds(rig, "OSSH")
    sessions = {r["session_id"] for r in rig.rounds}
    log = rig.server.log_text()
    assert "rejected" not in log, [line for line in log.splitlines() if "rejected" in line]
    assert log.count("psiphon-connected accepted") >= len(sessions)
    users = rig.server.events("unique_user")
    assert len(users) >= len(sessions)
    assert all((u["sponsor_id"], u["propagation_channel_id"]) == (SPONSOR_ID, CHANNEL_ID) for u in users)
    assert all(u["last_connected"] == "None" for u in users)
    tunnels = [e for e in rig.server.events("server_tunnel") if e.get("session_id") in sessions]
    assert len(tunnels) == len(sessions)
    for event in tunnels:
        assert (event["sponsor_id"], event["propagation_channel_id"]) == (SPONSOR_ID, CHANNEL_ID), event
        assert event["client_platform"].startswith("Linux_interop")


def test_no_client_address_in_the_event_log(rig):
    if not rig.rounds:
        run_rounds(rig, "SSH")
    text = rig.server.events_path.read_text()
    events = rig.server.events()
    assert events
    keys = {key for event in events for key in event}
    assert not [k for k in keys if re.search(r"addr|(^|_)ip($|_)|peer|remote", k)], keys
    # The clients (through the relays) all came from 127.0.0.1, and the server logs no own address.
    assert "127.0.0.1" not in text
