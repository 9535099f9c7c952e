"""Fuzzing the OSSH parsers: only our protocol errors, and the server never speaks first."""

import os

from hypothesis import given
from hypothesis import strategies as st

from onehop.core.ossh import ClientObfuscator, ServerObfuscator
from onehop.core.sansio import drain
from onehop.errors import RemoteProtocolError

KEYWORD = "fuzz-keyword"


def new_server():
    return ServerObfuscator(KEYWORD, replay_check=lambda s: True, random_bytes=os.urandom)


def feed_all(endpoint, chunks):
    """Feed chunks; return (events, error). Any exception other than ours fails the test."""
    events = []
    for chunk in chunks:
        endpoint.receive_data(chunk)
        try:
            events.extend(drain(endpoint))
        except RemoteProtocolError as exc:
            return events, exc
    return events, None


@given(st.lists(st.binary(max_size=3000), max_size=8))
def test_server_parser_on_random_bytes(chunks):
    server = new_server()
    events, _ = feed_all(server, chunks)
    assert events == []  # random bytes never form a valid preamble
    assert server.data_to_send() == b""


@given(st.data())
def test_server_parser_on_mutated_preamble(data):
    client = ClientObfuscator(KEYWORD, seed=data.draw(st.binary(min_size=16, max_size=16)),
                              padding_prng_seed=data.draw(st.binary(min_size=32, max_size=32)),
                              max_padding=200)
    client.send(b"SSH-2.0-fuzz\r\n")
    wire = bytearray(client.data_to_send())
    index = data.draw(st.integers(16, 19))  # inside the encrypted magic value
    wire[index] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(wire)))
    server = new_server()
    events, _ = feed_all(server, [bytes(wire[:cut]), bytes(wire[cut:])])
    assert events == []
    assert server.data_to_send() == b""


@given(st.lists(st.binary(max_size=2000), max_size=6))
def test_client_parser_on_random_server_bytes(chunks):
    client = ClientObfuscator(KEYWORD, seed=os.urandom(16), padding_prng_seed=os.urandom(32))
    client.send(b"SSH-2.0-fuzz\r\n")
    feed_all(client, chunks)  # must not raise anything but RemoteProtocolError


@given(st.binary(min_size=1, max_size=64))
def test_server_after_error_stays_silent(garbage):
    server = new_server()
    server.receive_data(b"\x00" * 24 + garbage + os.urandom(66000))
    _, error = feed_all(server, [b""])
    assert error is not None
    assert server.data_to_send() == b""
