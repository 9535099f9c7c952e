"""Every core parser speaks ``core.sansio``'s dialect, whatever bytes it is fed.

``next_event`` returns an event or a ``Pending`` member (never ``None``), and bad bytes
raise ``RemoteProtocolError`` whose reason is a ``Reason`` member.
"""

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.core.http1 import ResponseParser
from onehop.core.httpproxy import HttpProxyServer
from onehop.core.ossh import ClientObfuscator, ServerObfuscator
from onehop.core.sansio import NEED_DATA, PAUSED, Pending, drain
from onehop.core.socks5 import Socks5Server
from onehop.core.udpgw import UdpgwParser, encode_keepalive
from onehop.core.upstreamproxy import HttpConnectClientHandshake, Socks4aClientHandshake, Socks5ClientHandshake
from onehop.errors import Reason, RemoteProtocolError

KEYWORD = "dialect-keyword"

PARSERS = {
    "ossh-server": lambda: ServerObfuscator(KEYWORD, replay_check=lambda s: True, random_bytes=os.urandom),
    "ossh-client": lambda: ClientObfuscator(KEYWORD, seed=bytes(16), padding_prng_seed=bytes(32)),
    "udpgw": UdpgwParser,
    "http1-response": ResponseParser,
    "socks-server": Socks5Server,
    "http-proxy-server": HttpProxyServer,
    "socks5-upstream": lambda: Socks5ClientHandshake("example.com", 443),
    "socks4a-upstream": lambda: Socks4aClientHandshake("example.com", 443),
    "http-upstream": lambda: HttpConnectClientHandshake("example.com", 443),
}


@pytest.mark.parametrize("make", PARSERS.values(), ids=PARSERS.keys())
def test_a_parser_without_bytes_needs_data(make):
    parser = make()
    if isinstance(parser, ClientObfuscator):
        parser.send(b"SSH-2.0-x\r\n")  # the client reads nothing before it has written
    assert parser.next_event() is NEED_DATA


@pytest.mark.parametrize("make", PARSERS.values(), ids=PARSERS.keys())
@given(chunks=st.lists(st.binary(max_size=600), max_size=6))
def test_a_parser_answers_any_bytes_in_the_dialect(make, chunks):
    parser = make()
    try:
        for chunk in chunks:
            parser.receive_data(chunk)
            events = list(drain(parser))
            assert None not in events
            assert isinstance(parser.next_event(), Pending)
    except RemoteProtocolError as exc:
        assert isinstance(exc.reason, Reason)


def test_udpgw_waits_for_a_whole_message():
    parser = UdpgwParser()
    keepalive = encode_keepalive(7)
    parser.receive_data(keepalive[:3])
    assert parser.next_event() is NEED_DATA
    parser.receive_data(keepalive[3:])
    assert parser.next_event().conn_id == 7
    assert parser.next_event() is NEED_DATA


def test_a_complete_http_response_leaves_the_parser_paused():
    parser = ResponseParser()
    parser.receive_data(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert [type(e).__name__ for e in drain(parser)] == ["ResponseHead", "ResponseComplete"]
    assert parser.next_event() is PAUSED
