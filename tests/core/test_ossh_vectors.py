"""OSSH against Psiphon's byte-exact vectors (vectors/ossh_*.json)."""

import pytest

from onehop.core.ossh import (ClientObfuscator, DataReceived, PreambleReceived, PrefixSpec,
                              ServerObfuscator)
from onehop.core.ossh.cipher import RC4Stream, derive_key, make_terminator
from onehop.core.ossh.sshframing import server_line_padding
from onehop.core import sansio
from onehop.core.prng import SeededPRNG, salted_seed
from tests.conftest import vector_cases


def h(s):
    return bytes.fromhex(s)


def fresh(_seed):
    return True


def no_random(n):
    raise AssertionError("deterministic vector case must not need randomness")


def drain(endpoint):
    return list(sansio.drain(endpoint))


def upstream_bytes(events):
    return b"".join(e.data for e in events if isinstance(e, DataReceived))


@pytest.mark.parametrize("case", vector_cases("ossh_kdf"), ids=lambda c: c["keyword"][:8])
def test_key_derivation_and_keystream(case):
    seed, keyword = h(case["seed"]), case["keyword"].encode()
    for label, field in ((b"client_to_server", "client_to_server"), (b"server_to_client", "server_to_client")):
        key = derive_key(seed, keyword, label)
        assert key.hex() == case[f"{field}_key"]
        assert RC4Stream(key).apply(bytes(64)).hex() == case[f"{field}_keystream_64"]


PREAMBLES = vector_cases("ossh_client_preamble")


@pytest.mark.parametrize("case", PREAMBLES, ids=lambda c: c["name"])
def test_client_seed_message_and_writes(case):
    client = ClientObfuscator(case["keyword"], seed=h(case["seed"]),
                              padding_prng_seed=h(case["padding_prng_seed"]),
                              min_padding=case["min_padding"], max_padding=case["max_padding"])
    client.send(h(case["client_ident_line"]))
    assert [w.hex() for w in client.writes_to_send()] == case["client_writes"]
    assert client.padding_length == case["upstream_ossh_padding_stat"]


@pytest.mark.parametrize("case", PREAMBLES, ids=lambda c: c["name"])
def test_server_accepts_client_seed_message(case):
    server = ServerObfuscator(case["keyword"], replay_check=fresh, random_bytes=no_random)
    for write in case["client_writes"]:
        server.receive_data(h(write))
    events = drain(server)
    assert events[0] == PreambleReceived(case["padding_length"], None)
    assert upstream_bytes(events) == h(case["client_ident_line"])


SERVER_PADDING = vector_cases("ossh_server_padding")


@pytest.mark.parametrize("case", SERVER_PADDING, ids=lambda c: c["name"])
def test_server_line_padding_lengths(case):
    seed = h(case["server_prng_seed"])
    assert salted_seed(seed, "obfuscated-ssh-padding").hex() == case["salted_padding_seed"]
    padding = server_line_padding(SeededPRNG.salted(seed, "obfuscated-ssh-padding"))
    assert len(padding) == case["padding_length"]
    lines = padding.split(b"\r\n")[:-1]
    assert [len(line) + 2 for line in lines] == case["padding_line_lengths"]
    assert all(set(line) <= {0} for line in lines)


CONNECTION_PADDING = [c for c in SERVER_PADDING if "client_seed_message" in c]


@pytest.mark.parametrize("case", CONNECTION_PADDING, ids=lambda c: c["name"])
def test_server_first_bytes_are_psiphons(case):
    server = ServerObfuscator(case["keyword"], replay_check=fresh, random_bytes=no_random)
    server.receive_data(h(case["client_seed_message"]))
    assert isinstance(server.next_event(), PreambleReceived)
    server.send(h(case["server_ident_line"]))
    writes = server.writes_to_send()
    assert [w.hex() for w in writes] == case["server_writes"]
    assert b"".join(writes).hex() == case["server_bytes"]
    assert server.padding_length == case["padding_length"]


@pytest.mark.parametrize("case", CONNECTION_PADDING, ids=lambda c: c["name"])
def test_client_reads_server_first_bytes(case):
    pre = next(p for p in PREAMBLES if p["name"] == case["name"])
    client = ClientObfuscator(pre["keyword"], seed=h(pre["seed"]),
                              padding_prng_seed=h(pre["padding_prng_seed"]),
                              min_padding=pre["min_padding"], max_padding=pre["max_padding"])
    client.send(h(pre["client_ident_line"]))
    server_bytes = h(case["server_bytes"])
    for i in range(0, len(server_bytes), 1000):  # arbitrary chunking
        client.receive_data(server_bytes[i:i + 1000])
    assert upstream_bytes(drain(client)) == h(case["server_ident_line"])


PREFIX_CASES = vector_cases("ossh_prefix")
FULL_PREFIX_CASES = [c for c in PREFIX_CASES if c["name"] != "terminator_only"]


@pytest.mark.parametrize("case", [c for c in PREFIX_CASES if c["name"] == "terminator_only"],
                         ids=lambda c: c["direction"] + c["keyword"][:4])
def test_prefix_terminator(case):
    label = case["direction"].encode()
    terminator = make_terminator(case["keyword"].encode(), h(case["first_24"]), label)
    assert terminator.hex() == case["terminator"]


@pytest.mark.parametrize("case", FULL_PREFIX_CASES, ids=lambda c: c["name"])
def test_server_accepts_prefixed_client(case):
    server = ServerObfuscator(case["keyword"], replay_check=fresh, random_bytes=lambda n: bytes(n),
                              prefix_specs={case["spec_name"]: case["server_prefix_generator"]}
                              if case["server_prefix_generator"] else {})
    wire = b"".join(h(w) for w in case["client_writes"])
    for i in range(0, len(wire), 7):
        server.receive_data(wire[i:i + 7])
    events = drain(server)
    assert events[0] == PreambleReceived(case["padding_length"], case["spec_name"])
    assert upstream_bytes(events) == b"SSH-2.0-Test\r\n"
    server.send(case["server_ident_line_text"].encode())
    writes = server.writes_to_send()
    prefix_len = len(h(case["server_prefix"]))
    assert len(writes[0]) == prefix_len
    first_24 = writes[0][:24] if prefix_len >= 24 else (writes[0] + writes[1])[:24]
    terminator = make_terminator(case["keyword"].encode(), first_24, b"server_to_client")
    assert writes[1][:16].hex() == terminator.hex()
    if not case["server_prefix_is_random"]:
        assert writes[0].hex() == case["server_prefix"]
        assert writes[1][:16].hex() == case["server_terminator"]
        assert b"".join(writes).hex() == case["server_bytes"]


def prefixed_client(case) -> ClientObfuscator:
    """The client obfuscator of a full-prefix vector: keyword, seeds, padding and prefix."""
    return ClientObfuscator(case["keyword"], seed=h(case["seed"]),
                            padding_prng_seed=h(case["padding_prng_seed"]),
                            min_padding=case["min_padding"], max_padding=case["max_padding"],
                            prefix=PrefixSpec(case["spec_name"], case["client_prefix_generator"]),
                            prefix_seed=h(case["prefix_generator_seed"]))


@pytest.mark.parametrize("case", FULL_PREFIX_CASES, ids=lambda c: c["name"])
def test_prefixed_client_bytes(case):
    client = prefixed_client(case)
    client.send(b"SSH-2.0-Test\r\n")
    writes = client.writes_to_send()
    assert len(writes) == 3
    assert len(writes[0]) == case["generated_prefix_length"]
    assert writes[2].hex() == case["client_ident_line_obfuscated"]
    rest = writes[1]
    if case["client_prefix_generator"] == case["client_prefix_generator"].replace("[", "").replace("{", ""):
        # A literal pattern is deterministic: the whole byte stream must be Psiphon's.
        assert [w.hex() for w in writes] == case["client_writes"]
    else:
        expected_terminator = make_terminator(case["keyword"].encode(), (writes[0] + rest)[:24], b"client_to_server")
        fill = 24 - len(writes[0]) if len(writes[0]) < 24 else 0
        assert rest[fill:fill + 16] == expected_terminator
        # Everything after the terminator is fixed by seed, keyword and padding PRNG.
        assert rest[fill + 16:].hex() == case["client_writes"][1][2 * (fill + 16):]


@pytest.mark.parametrize("case", FULL_PREFIX_CASES, ids=lambda c: c["name"])
def test_prefixed_client_reads_server_reply(case):
    client = prefixed_client(case)
    client.send(b"SSH-2.0-Test\r\n")
    client.receive_data(h(case["server_bytes"]))
    assert upstream_bytes(drain(client)) == case["server_ident_line_text"].encode()
