"""OSSH client and server talking to each other in memory (no sockets)."""

import os
import struct

import pytest

from onehop.core.ossh import (ClientObfuscator, DataReceived, EOFReceived, PreambleReceived,
                              SeedHistory, ServerObfuscator, default_client_prefix)
from onehop.core.ossh.sshframing import parse_packet_header
from onehop.core.sansio import NEED_DATA, drain
from onehop.errors import OSSHReason, RemoteProtocolError

KEYWORD = "5f0e1c2a" * 8


def ssh_packet(payload: bytes, block: int = 8) -> bytes:
    padding = block - (5 + len(payload)) % block
    if padding < 4:
        padding += block
    return struct.pack(">IB", 1 + len(payload) + padding, padding) + payload + b"\xaa" * padding


KEXINIT = ssh_packet(b"\x14" + os.urandom(16) + b"\x00" * 60)
NEWKEYS = ssh_packet(b"\x15")


def make_pair(prefix=False, history=None):
    if history is None:
        history = SeedHistory()
    client = ClientObfuscator(KEYWORD, seed=os.urandom(16), padding_prng_seed=os.urandom(32),
                              prefix=default_client_prefix() if prefix else None,
                              prefix_seed=os.urandom(32) if prefix else None)
    server = ServerObfuscator(KEYWORD, replay_check=lambda s: history.add_new(s, 0.0),
                              random_bytes=os.urandom)
    return client, server


def pump(src, dst):
    data = src.data_to_send()
    if data:
        dst.receive_data(data)
    return list(drain(dst))


def upstream(events):
    return b"".join(e.data for e in events if isinstance(e, DataReceived))


def parse_packets(data: bytes):
    packets = []
    while data:
        header = parse_packet_header(data)
        assert header is not None
        assert header.total_length % 8 == 0 and header.padding_length >= 4
        packets.append(data[5:5 + header.payload_length])
        data = data[header.total_length:]
    return packets


@pytest.mark.parametrize("prefix", [False, True], ids=["plain", "prefix"])
def test_full_kex_exchange_then_passthrough(prefix):
    client, server = make_pair(prefix)
    client.send(b"SSH-2.0-OpenSSH_8.9\r\n" + KEXINIT)
    events = pump(client, server)
    assert isinstance(events[0], PreambleReceived)
    assert events[0].prefix_spec_name == ("http-get" if prefix else None)
    got = upstream(events)
    assert got.startswith(b"SSH-2.0-OpenSSH_8.9\r\n")
    kexinit_payload = KEXINIT[5:5 + parse_packet_header(KEXINIT).payload_length]
    assert parse_packets(got[len(b"SSH-2.0-OpenSSH_8.9\r\n"):]) == [kexinit_payload]

    server.send(b"SSH-2.0-OpenSSH_7.7\r\n" + KEXINIT + NEWKEYS + b"ENCRYPTED-SERVER")
    got = upstream(pump(server, client))
    assert got.startswith(b"SSH-2.0-OpenSSH_7.7\r\n")
    assert got.endswith(b"ENCRYPTED-SERVER")
    assert server.write_passthrough and client.read_passthrough

    client.send(NEWKEYS + b"ENCRYPTED-CLIENT")
    got = upstream(pump(client, server))
    assert got.endswith(b"ENCRYPTED-CLIENT")
    assert parse_packets(got[:-len(b"ENCRYPTED-CLIENT")]) == [b"\x15"]
    assert client.write_passthrough and server.read_passthrough

    # After NEWKEYS both directions are the identity.
    client.send(b"bulk-up")
    assert client.data_to_send() == b"bulk-up"
    server.receive_data(b"bulk-in")
    assert server.next_event() == DataReceived(b"bulk-in")


def test_kex_packets_on_the_wire_are_padded_and_hidden():
    client, server = make_pair()
    client.send(b"SSH-2.0-x\r\n")
    client.data_to_send()
    sizes = set()
    for _ in range(20):
        client.send(KEXINIT)
        wire = client.data_to_send()
        sizes.add(len(wire))
        assert b"\x14" + KEXINIT[6:22] not in wire
    assert len(sizes) > 1  # random extra padding varies the length


def test_replayed_preamble_is_rejected():
    history = SeedHistory()
    client, server = make_pair(history=history)
    client.send(b"SSH-2.0-x\r\n")
    first = client.data_to_send()
    server.receive_data(first)
    assert isinstance(server.next_event(), PreambleReceived)
    replay = ServerObfuscator(KEYWORD, replay_check=lambda s: history.add_new(s, 10.0),
                              random_bytes=os.urandom)
    replay.receive_data(first)
    with pytest.raises(RemoteProtocolError) as info:
        replay.next_event()
    assert info.value.reason is OSSHReason.DUPLICATE_SEED
    with pytest.raises(RemoteProtocolError):  # the error is sticky
        replay.next_event()


def test_wrong_keyword_is_rejected_after_search_limit():
    client = ClientObfuscator("other-keyword", seed=os.urandom(16), padding_prng_seed=os.urandom(32))
    client.send(b"SSH-2.0-x\r\n")
    server = ServerObfuscator(KEYWORD, replay_check=lambda s: True, random_bytes=os.urandom)
    server.receive_data(client.data_to_send())
    assert server.next_event() is NEED_DATA  # could be a prefix: keep reading
    server.receive_data(os.urandom(70000))
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.reason is OSSHReason.NO_PREFIX_TERMINATOR


def test_server_may_not_write_before_preamble():
    _, server = make_pair()
    with pytest.raises(Exception):
        server.send(b"SSH-2.0-x\r\n")


def test_eof_is_reported_once():
    client, server = make_pair()
    client.send(b"SSH-2.0-x\r\n")
    server.receive_data(client.data_to_send())
    server.receive_eof()
    events = list(drain(server))
    assert isinstance(events[-1], EOFReceived)
    assert server.next_event() is NEED_DATA


def test_seed_history_ttl_and_capacity():
    history = SeedHistory(ttl_seconds=100, capacity=3)
    assert history.add_new(b"a", 0)
    assert not history.add_new(b"a", 50)
    assert history.add_new(b"a", 101)  # expired, fresh again
    for seed in (b"b", b"c", b"d"):
        assert history.add_new(seed, 102)
    assert len(history) == 3
    assert history.add_new(b"a", 103)  # evicted by capacity


def test_deferred_key_derivation_waits_for_provided_keys():
    from onehop.core.ossh.cipher import derive_key
    from onehop.core.ossh.events import KeysNeeded
    client = ClientObfuscator(KEYWORD, seed=os.urandom(16), padding_prng_seed=os.urandom(32))
    server = ServerObfuscator(KEYWORD, replay_check=lambda s: True, random_bytes=os.urandom,
                              defer_key_derivation=True)
    client.send(b"SSH-2.0-x\r\n")
    server.receive_data(client.data_to_send())
    event = server.next_event()
    assert isinstance(event, KeysNeeded)
    assert server.next_event() is NEED_DATA  # still waiting, and asks only once
    server.provide_keys(event.seed, derive_key(event.seed, KEYWORD.encode(), b"client_to_server"),
                        derive_key(event.seed, KEYWORD.encode(), b"server_to_client"))
    assert isinstance(server.next_event(), PreambleReceived)
    assert server.next_event() == DataReceived(b"SSH-2.0-x\r\n")


def test_deferred_keys_for_a_prefixed_stream_are_asked_for_twice():
    from onehop.core.ossh.cipher import derive_key
    from onehop.core.ossh.events import KeysNeeded
    client, _ = make_pair(prefix=True)
    server = ServerObfuscator(KEYWORD, replay_check=lambda s: True, random_bytes=os.urandom,
                              defer_key_derivation=True)
    client.send(b"SSH-2.0-x\r\n")
    server.receive_data(client.data_to_send())
    asked = []
    while True:
        event = server.next_event()
        if isinstance(event, KeysNeeded):
            asked.append(event.seed)
            server.provide_keys(event.seed, derive_key(event.seed, KEYWORD.encode(), b"client_to_server"),
                                derive_key(event.seed, KEYWORD.encode(), b"server_to_client"))
            continue
        if isinstance(event, PreambleReceived):
            break
    assert len(asked) == 2  # the prefix's first 24 bytes, then the real seed
    assert event.prefix_spec_name == "http-get"
