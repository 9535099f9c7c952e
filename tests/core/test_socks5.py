"""SOCKS5 (RFC 1928) and SOCKS4/4a server side: hand-written wire bytes, every reply code, fuzz."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.core.socks5 import (
    NEED_DATA,
    PAUSED,
    AddressType,
    ConnectReply,
    ConnectRequested,
    GreetingRefused,
    ReplyCode,
    RequestRefused,
    Socks5Server,
    State,
    encode_address,
    format_ip,
)
from onehop.errors import LocalProtocolError, RemoteProtocolError

GREETING = bytes.fromhex("050100")  # VER 5, NMETHODS 1, NO AUTHENTICATION REQUIRED
# VER 5, CMD CONNECT, RSV, ATYP IPv4, 192.0.2.1, port 80
REQUEST_V4 = bytes.fromhex("05010001c000020100 50".replace(" ", ""))
REQUEST_DOMAIN = bytes.fromhex("050100030b") + b"example.com" + bytes.fromhex("01bb")
REQUEST_V6 = bytes.fromhex("05010004" "20010db8000000000000000000000001" "0016")


def pump(server, events, reply=ReplyCode.SUCCEEDED):
    """Collect events until the server needs data or pauses; answer CONNECTs with ``reply``."""
    while True:
        event = server.next_event()
        if event is NEED_DATA or event is PAUSED:
            return
        events.append(event)
        if isinstance(event, ConnectRequested):
            server.send(ConnectReply(reply))


def run(chunks, eof=False, reply=ReplyCode.SUCCEEDED):
    """Feed ``chunks`` (then EOF); return (events, error reason, bytes sent, trailing data)."""
    server, events, error = Socks5Server(), [], None
    try:
        for chunk in chunks:
            server.receive_data(chunk)
            pump(server, events, reply)
        if eof:
            server.receive_eof()
            pump(server, events, reply)
    except RemoteProtocolError as exc:
        error = exc.reason
    trailing = server.trailing_data() if server.state in (State.RELAY, State.CLOSED) else None
    return events, error, server.data_to_send(), trailing


def connect(request, extra=b""):
    server = Socks5Server()
    server.receive_data(GREETING + request + extra)
    return server, server.next_event()


# -- greeting --------------------------------------------------------------------------

def test_greeting_with_no_auth_gets_method_00():
    server = Socks5Server()
    server.receive_data(GREETING)
    assert server.next_event() is NEED_DATA
    assert server.data_to_send() == b"\x05\x00"
    assert server.state is State.REQUEST


def test_no_auth_is_picked_among_several_methods():
    server = Socks5Server()
    server.receive_data(bytes.fromhex("0503020100"))  # USERNAME/PASSWORD, GSSAPI, NO AUTH
    assert server.next_event() is NEED_DATA
    assert server.data_to_send() == b"\x05\x00"


@pytest.mark.parametrize("greeting, offered", [
    (bytes.fromhex("05020102"), (1, 2)),  # GSSAPI and USERNAME/PASSWORD only
    (bytes.fromhex("0500"), ()),          # no methods at all
])
def test_no_acceptable_method_is_answered_ff(greeting, offered):
    server = Socks5Server()
    server.receive_data(greeting + REQUEST_V4)
    assert server.next_event() == GreetingRefused(offered)
    assert server.data_to_send() == b"\x05\xff"
    assert server.state is State.CLOSED
    assert server.next_event() is PAUSED


@pytest.mark.parametrize("first", [b"G", b"\x06", b"\x00", b"\x16"])
def test_unknown_version_is_a_remote_error(first):
    server = Socks5Server()
    server.receive_data(first + b"ET / HTTP/1.1\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.reason == "socks_bad_version"
    assert server.state is State.ERROR
    assert server.data_to_send() == b""
    with pytest.raises(LocalProtocolError):
        server.next_event()


# -- requests --------------------------------------------------------------------------

def test_connect_ipv4_from_rfc_bytes():
    server, event = connect(REQUEST_V4)
    assert event == ConnectRequested("192.0.2.1", 80, AddressType.IPV4, 5)
    assert server.next_event() is PAUSED
    assert server.state is State.AWAITING_REPLY


def test_connect_domain_from_rfc_bytes():
    _, event = connect(REQUEST_DOMAIN)
    assert event == ConnectRequested("example.com", 443, AddressType.DOMAIN, 5)


def test_connect_ipv6_from_rfc_bytes():
    _, event = connect(REQUEST_V6)
    assert event == ConnectRequested("2001:db8::1", 22, AddressType.IPV6, 5)


@pytest.mark.parametrize("packed_hex, text", [
    ("20010db8000000000000000000000001", "2001:db8::1"),        # leading zeros dropped, lower case
    ("20010db8000000000001000000000001", "2001:db8::1:0:0:1"),  # tie: the first run is compressed
    ("20010db8000000010000000000000001", "2001:db8:0:1::1"),    # the longest run is compressed
    ("20010db8000000010001000100010001", "2001:db8:0:1:1:1:1:1"),  # a single 0 field stays
    ("20010DB8AAAABBBBCCCCDDDDEEEE0001".lower(), "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1"),
    ("00000000000000000000000000000001", "::1"),
    ("00000000000000000000000000000000", "::"),
    ("00000000000000000000ffffc0000201", "::ffff:192.0.2.1"),   # IPv4-mapped: mixed notation
    ("fe800000000000000000000000000000", "fe80::"),
])
def test_ipv6_targets_are_rfc5952_text(packed_hex, text):
    request = bytes.fromhex("05010004" + packed_hex + "0050")
    _, event = connect(request)
    assert event.host == text
    assert format_ip(bytes.fromhex(packed_hex)) == text


@pytest.mark.parametrize("raw, host", [
    (b"b\xc3\xbccher.example", "b\u00fccher.example"),  # UTF-8 (not IDNA) is passed through
    (b"under_score.example", "under_score.example"),
    (b"with space", "with space"),
    (b"%41%00", "%41%00"),
    (b"1.2.3.4", "1.2.3.4"),  # an address written as a name stays a DOMAIN request
    (b"a" * 255, "a" * 255),
])
def test_domain_names_with_odd_bytes_are_kept(raw, host):
    request = bytes([5, 1, 0, 3, len(raw)]) + raw + b"\x00\x50"
    _, event = connect(request)
    assert event == ConnectRequested(host, 80, AddressType.DOMAIN, 5)


@pytest.mark.parametrize("raw", [b"", b"\x00evil.example", b"a\r\nb", b"\xff\xfe", b"\xc3", b"tab\there", b"\x7f"])
def test_unusable_domain_names_are_refused_host_unreachable(raw):
    server, event = connect(bytes([5, 1, 0, 3, len(raw)]) + raw + b"\x00\x50")
    assert isinstance(event, RequestRefused) and event.reply is ReplyCode.HOST_UNREACHABLE
    assert server.data_to_send() == b"\x05\x00" + bytes.fromhex("05040001000000000000")
    assert server.state is State.CLOSED


@pytest.mark.parametrize("command", [0x02, 0x03, 0x00, 0x09])  # BIND, UDP ASSOCIATE, unknown
def test_other_commands_are_refused_07(command):
    server, event = connect(bytes([5, command, 0, 1, 192, 0, 2, 1, 0, 80]))
    assert event == RequestRefused(ReplyCode.COMMAND_NOT_SUPPORTED, f"command 0x{command:02x} not supported")
    assert server.data_to_send() == b"\x05\x00" + bytes.fromhex("05070001000000000000")
    assert server.state is State.CLOSED


@pytest.mark.parametrize("atyp", [0x00, 0x02, 0x05, 0xFF])
def test_unknown_address_type_is_refused_08(atyp):
    server, event = connect(bytes([5, 1, 0, atyp, 1, 2, 3, 4, 0, 80]))
    assert isinstance(event, RequestRefused) and event.reply is ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED
    assert server.data_to_send() == b"\x05\x00" + bytes.fromhex("05080001000000000000")


def test_request_with_wrong_version_is_a_remote_error():
    server = Socks5Server()
    server.receive_data(GREETING + b"\x04" + REQUEST_V4[1:])
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.reason == "socks_bad_version"


# -- replies ---------------------------------------------------------------------------

@pytest.mark.parametrize("code, byte", [
    (ReplyCode.SUCCEEDED, 0x00), (ReplyCode.GENERAL_FAILURE, 0x01), (ReplyCode.NOT_ALLOWED, 0x02),
    (ReplyCode.NETWORK_UNREACHABLE, 0x03), (ReplyCode.HOST_UNREACHABLE, 0x04),
    (ReplyCode.CONNECTION_REFUSED, 0x05), (ReplyCode.TTL_EXPIRED, 0x06),
    (ReplyCode.COMMAND_NOT_SUPPORTED, 0x07), (ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED, 0x08),
])
def test_every_reply_code_with_a_bound_ipv4_address(code, byte):
    server, _ = connect(REQUEST_V4)
    server.data_to_send()
    server.send(ConnectReply(code, "10.0.0.1", 1234))
    assert server.data_to_send() == bytes([0x05, byte, 0x00, 0x01, 10, 0, 0, 1, 0x04, 0xD2])
    assert server.state is (State.RELAY if byte == 0 else State.CLOSED)


def test_reply_code_may_be_a_plain_int():
    server, _ = connect(REQUEST_V4)
    server.send(ConnectReply(5))
    assert server.data_to_send()[-10:] == bytes.fromhex("05050001000000000000")


@pytest.mark.parametrize("host, encoded", [
    ("2001:db8::7", bytes.fromhex("04" "20010db8000000000000000000000007")),
    ("proxy.example", b"\x03\x0dproxy.example"),
    ("0.0.0.0", bytes.fromhex("0100000000")),
])
def test_bound_address_types(host, encoded):
    server, _ = connect(REQUEST_V4)
    server.data_to_send()
    server.send(ConnectReply(ReplyCode.SUCCEEDED, host, 443))
    assert server.data_to_send() == b"\x05\x00\x00" + encoded + b"\x01\xbb"
    assert encode_address(host) == encoded


@pytest.mark.parametrize("reply", [
    ConnectReply(0x09), ConnectReply(ReplyCode.SUCCEEDED, "1.2.3.4", 65536),
    ConnectReply(ReplyCode.SUCCEEDED, "x" * 256), ConnectReply(ReplyCode.SUCCEEDED, ""),
    ConnectReply(ReplyCode.SUCCEEDED, "bad\x00host"),
])
def test_bad_replies_are_local_errors(reply):
    server, _ = connect(REQUEST_V4)
    with pytest.raises(LocalProtocolError):
        server.send(reply)
    assert server.state is State.AWAITING_REPLY


def test_sending_a_reply_before_a_request_is_a_local_error():
    server = Socks5Server()
    with pytest.raises(LocalProtocolError):
        server.send(ConnectReply(ReplyCode.SUCCEEDED))
    server, _ = connect(REQUEST_V4)
    server.send(ConnectReply(ReplyCode.SUCCEEDED))
    with pytest.raises(LocalProtocolError):
        server.send(ConnectReply(ReplyCode.SUCCEEDED))


# -- trailing data, truncation, EOF ----------------------------------------------------

def test_bytes_past_the_request_are_trailing_data():
    server, event = connect(REQUEST_DOMAIN, extra=b"\x16\x03\x01 early TLS")
    assert isinstance(event, ConnectRequested)
    server.receive_data(b" and more")  # arrives while we dial the target
    server.send(ConnectReply(ReplyCode.SUCCEEDED))
    server.receive_data(b" after reply")
    assert server.trailing_data() == b"\x16\x03\x01 early TLS and more after reply"
    assert server.trailing_data() == b""
    assert server.next_event() is PAUSED


def test_large_trailing_data_is_kept_whole():
    blob = bytes(range(256)) * 4096
    server, _ = connect(REQUEST_V4, extra=blob)
    server.send(ConnectReply(ReplyCode.SUCCEEDED))
    assert server.trailing_data() == blob


def test_trailing_data_before_the_request_is_a_local_error():
    server = Socks5Server()
    server.receive_data(GREETING + REQUEST_V4[:3])
    server.next_event()
    with pytest.raises(LocalProtocolError):
        server.trailing_data()


@pytest.mark.parametrize("message", [GREETING + REQUEST_V4, GREETING + REQUEST_DOMAIN, GREETING + REQUEST_V6])
def test_every_truncation_needs_data_then_fails_on_eof(message):
    for cut in range(len(message)):
        server = Socks5Server()
        server.receive_data(message[:cut])
        assert server.next_event() is NEED_DATA
        assert server.next_event() is NEED_DATA
        server.receive_eof()
        with pytest.raises(RemoteProtocolError) as info:
            server.next_event()
        assert info.value.reason == "socks_eof"


def test_eof_after_the_request_is_not_an_error():
    server, _ = connect(REQUEST_V4, extra=b"last words")
    server.receive_eof()
    assert server.next_event() is PAUSED
    server.send(ConnectReply(ReplyCode.SUCCEEDED))
    assert server.eof_received
    assert server.trailing_data() == b"last words"


def test_receive_data_after_eof_is_a_local_error():
    server = Socks5Server()
    server.receive_eof()
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"\x05")


# -- SOCKS4 and SOCKS4a ----------------------------------------------------------------

def test_socks4_connect_from_protocol_bytes():
    # VN 4, CD 1, DSTPORT 80, DSTIP 192.0.2.1, USERID "fred", NUL
    server = Socks5Server()
    server.receive_data(bytes.fromhex("04010050c0000201") + b"fred\x00" + b"GET")
    assert server.next_event() == ConnectRequested("192.0.2.1", 80, AddressType.IPV4, 4)
    server.send(ConnectReply(ReplyCode.SUCCEEDED, "10.0.0.1", 1234))
    assert server.data_to_send() == bytes.fromhex("005a04d20a000001")
    assert server.trailing_data() == b"GET"


def test_socks4a_connect_names_the_host():
    server = Socks5Server()
    server.receive_data(bytes.fromhex("040101bb00000001") + b"\x00" + b"example.com\x00")
    assert server.next_event() == ConnectRequested("example.com", 443, AddressType.DOMAIN, 4)
    server.send(ConnectReply(ReplyCode.CONNECTION_REFUSED))
    assert server.data_to_send() == bytes.fromhex("005b000000000000")
    assert server.state is State.CLOSED


def test_socks4_bind_is_refused_5b():
    server = Socks5Server()
    server.receive_data(bytes.fromhex("04020050c0000201") + b"\x00")
    event = server.next_event()
    assert isinstance(event, RequestRefused) and event.reply is ReplyCode.COMMAND_NOT_SUPPORTED
    assert server.data_to_send() == bytes.fromhex("005b000000000000")


def test_socks4_ipv6_bound_address_is_sent_as_zeros():
    server = Socks5Server()
    server.receive_data(bytes.fromhex("04010050c0000201") + b"\x00")
    server.next_event()
    server.send(ConnectReply(ReplyCode.SUCCEEDED, "2001:db8::1", 80))
    assert server.data_to_send() == bytes.fromhex("005a005000000000")


@pytest.mark.parametrize("message", [
    bytes.fromhex("04010050c0000201") + b"u" * 256,                       # endless user id
    bytes.fromhex("0401005000000001") + b"\x00" + b"h" * 256,             # endless 4a domain
])
def test_socks4_strings_are_bounded(message):
    server = Socks5Server()
    server.receive_data(message)
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.reason == "socks4_field_too_long"


def test_socks4_fields_at_the_limit_are_accepted():
    server = Socks5Server()
    server.receive_data(bytes.fromhex("0401005000000001") + b"u" * 255 + b"\x00" + b"h" * 255 + b"\x00")
    assert server.next_event() == ConnectRequested("h" * 255, 80, AddressType.DOMAIN, 4)


# -- fuzz ------------------------------------------------------------------------------

def split(data, cuts):
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


OUR_EVENTS = (ConnectRequested, GreetingRefused, RequestRefused)


@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=12), st.booleans(),
       st.sampled_from(list(ReplyCode)))
def test_fuzz_arbitrary_bytes_only_give_our_events_or_remote_errors(data, cuts, eof, reply):
    for prefix in (b"", b"\x05", b"\x04", GREETING):
        events, _, _, _ = run(split(prefix + data, cuts), eof=eof, reply=reply)
        assert all(isinstance(event, OUR_EVENTS) for event in events)
        assert len(events) <= 1


def _domain_request(name):
    return bytes([5, 1, 0, 3, len(name)]) + name


@st.composite
def valid_conversations(draw):
    port = draw(st.integers(0, 65535)).to_bytes(2, "big")
    kind = draw(st.sampled_from(["v4", "v6", "name", "socks4", "socks4a", "bind", "atyp"]))
    if kind == "v4":
        body = GREETING + b"\x05\x01\x00\x01" + draw(st.binary(min_size=4, max_size=4)) + port
    elif kind == "v6":
        body = GREETING + b"\x05\x01\x00\x04" + draw(st.binary(min_size=16, max_size=16)) + port
    elif kind == "name":
        body = GREETING + _domain_request(draw(st.binary(max_size=255))) + port
    elif kind == "socks4":
        body = b"\x04\x01" + port + draw(st.binary(min_size=4, max_size=4).filter(lambda b: b[:3] != b"\0\0\0"))
        body += draw(st.binary(max_size=40).map(lambda b: b.replace(b"\0", b""))) + b"\x00"
    elif kind == "socks4a":
        body = b"\x04\x01" + port + b"\x00\x00\x00\x07\x00"
        body += draw(st.binary(max_size=40).map(lambda b: b.replace(b"\0", b""))) + b"\x00"
    elif kind == "bind":
        body = GREETING + b"\x05\x02\x00\x01\x7f\x00\x00\x01" + port
    else:
        body = GREETING + b"\x05\x01\x00\x09"
    return body + draw(st.binary(max_size=64))


@given(valid_conversations(), st.lists(st.integers(0, 400), max_size=20), st.booleans())
def test_fuzz_any_chunking_gives_the_same_outcome(message, cuts, eof):
    whole = run([message], eof=eof)
    assert whole[0] and isinstance(whole[0][0], OUR_EVENTS)
    assert run(split(message, cuts), eof=eof) == whole
    assert run([bytes([b]) for b in message], eof=eof) == whole
