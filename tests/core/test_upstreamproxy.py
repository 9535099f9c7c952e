"""Upstream proxy client handshakes (SOCKS5 + RFC 1929, SOCKS4a, HTTP CONNECT) and proxy URLs."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.core.upstreamproxy import (
    NEED_DATA,
    PAUSED,
    HttpConnectClientHandshake,
    ProxyConnected,
    ProxyCredentials,
    ProxySpec,
    Socks4aClientHandshake,
    Socks5ClientHandshake,
    basic_authorization,
    handshake_for,
    parse_proxy_url,
)
from onehop.errors import ConfigError, LocalProtocolError, RemoteProtocolError

BANNER = b"SSH-2.0-OpenSSH_9.6\r\n"
SOCKS5_OK_V4 = bytes.fromhex("05000001c000020104d2")  # succeeded, bound 192.0.2.1:1234


def answer(handshake, data):
    handshake.receive_data(data)
    return handshake.next_event()


def failure(handshake, data, eof=False):
    handshake.receive_data(data)
    if eof:
        handshake.receive_eof()
    with pytest.raises(RemoteProtocolError) as info:
        handshake.next_event()
    with pytest.raises(LocalProtocolError):
        handshake.next_event()
    return info.value


# -- SOCKS5 ----------------------------------------------------------------------------

def test_socks5_without_credentials_from_rfc_bytes():
    hs = Socks5ClientHandshake("example.com", 443)
    assert hs.data_to_send() == b"\x05\x01\x00"
    assert hs.data_to_send() == b""
    assert answer(hs, b"\x05\x00") is NEED_DATA
    assert hs.data_to_send() == bytes.fromhex("050100030b") + b"example.com" + bytes.fromhex("01bb")
    assert answer(hs, SOCKS5_OK_V4 + BANNER) == ProxyConnected("192.0.2.1", 1234)
    assert hs.connected and hs.next_event() is PAUSED
    assert hs.trailing_data() == BANNER
    assert hs.trailing_data() == b""


@pytest.mark.parametrize("host, encoded", [
    ("192.0.2.1", bytes.fromhex("01c0000201")),
    ("2001:db8::1", bytes.fromhex("04" "20010db8000000000000000000000001")),
    ("b\u00fccher.example", b"\x03\x0fb\xc3\xbccher.example"),
])
def test_socks5_request_address_types(host, encoded):
    hs = Socks5ClientHandshake(host, 22)
    hs.data_to_send()
    answer(hs, b"\x05\x00")
    assert hs.data_to_send() == b"\x05\x01\x00" + encoded + b"\x00\x16"


def test_socks5_username_password_rfc1929():
    hs = Socks5ClientHandshake("192.0.2.1", 22, ProxyCredentials("user", "pass"))
    assert hs.data_to_send() == b"\x05\x02\x00\x02"  # offers no-auth and username/password
    assert answer(hs, b"\x05\x02") is NEED_DATA
    assert hs.data_to_send() == b"\x01\x04user\x04pass"
    assert answer(hs, b"\x01\x00") is NEED_DATA
    assert hs.data_to_send() == bytes.fromhex("05010001c00002010016")
    assert answer(hs, SOCKS5_OK_V4) == ProxyConnected("192.0.2.1", 1234)


def test_socks5_credentials_unused_when_proxy_picks_no_auth():
    hs = Socks5ClientHandshake("192.0.2.1", 22, ProxyCredentials("user", "pass"))
    hs.data_to_send()
    answer(hs, b"\x05\x00")
    assert hs.data_to_send() == bytes.fromhex("05010001c00002010016")


def test_socks5_empty_password_is_sent_with_zero_length():
    hs = Socks5ClientHandshake("h", 1, ProxyCredentials("u"))
    hs.data_to_send()
    answer(hs, b"\x05\x02")
    assert hs.data_to_send() == b"\x01\x01u\x00"


def test_socks5_rejected_password():
    hs = Socks5ClientHandshake("h", 1, ProxyCredentials("user", "wrong"))
    assert failure(hs, b"\x05\x02\x01\x01").reason == "proxy_auth_rejected"


def test_socks5_proxy_that_requires_auth():
    error = failure(Socks5ClientHandshake("h", 1), b"\x05\xff")
    assert error.reason == "proxy_auth_required"
    assert "--upstream-proxy" in error.detail


def test_socks5_proxy_that_accepts_none_of_our_methods():
    error = failure(Socks5ClientHandshake("h", 1, ProxyCredentials("u", "p")), b"\x05\xff")
    assert error.reason == "proxy_auth_unsupported"


@pytest.mark.parametrize("code, reason", [
    (0x01, "proxy_general_failure"), (0x02, "proxy_not_allowed"), (0x03, "proxy_network_unreachable"),
    (0x04, "proxy_host_unreachable"), (0x05, "proxy_connection_refused"), (0x06, "proxy_ttl_expired"),
    (0x07, "proxy_command_not_supported"), (0x08, "proxy_address_type_not_supported"),
    (0x09, "proxy_connect_failed"), (0xFF, "proxy_connect_failed"),
])
def test_socks5_every_failure_reply(code, reason):
    error = failure(Socks5ClientHandshake("h", 1), b"\x05\x00" + bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
    assert error.reason == reason
    assert f"reply 0x{code:02x}" in error.detail


@pytest.mark.parametrize("reply, bound", [
    (bytes.fromhex("05000004" "20010db8000000000000000000000001" "0050"), ("2001:db8::1", 80)),
    (b"\x05\x00\x00\x03\x0dproxy.example\x01\xbb", ("proxy.example", 443)),
    (b"\x05\x00\x00\x03\x00\x00\x00", ("", 0)),
])
def test_socks5_bound_addresses(reply, bound):
    hs = Socks5ClientHandshake("h", 1)
    assert answer(hs, b"\x05\x00" + reply + b"x") == ProxyConnected(*bound)
    assert hs.trailing_data() == b"x"


@pytest.mark.parametrize("data, hint", [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "HTTP proxy"),
    (b"\x04\x00", "version byte 0x04"),
    (b"\x05\x02", "did not offer"),
    (b"\x05\x00\x04\x00", "version byte 0x04"),
    (b"\x05\x00\x05\x00\x00\x07\x00\x00", "address type 0x07"),
])
def test_socks5_bad_replies(data, hint):
    error = failure(Socks5ClientHandshake("h", 1), data)
    assert error.reason == "proxy_bad_reply"
    assert hint in error.detail


# -- SOCKS4a ---------------------------------------------------------------------------

def test_socks4_ipv4_target():
    hs = Socks4aClientHandshake("192.0.2.1", 80, ProxyCredentials("fred"))
    assert hs.data_to_send() == bytes.fromhex("04010050c0000201") + b"fred\x00"
    assert answer(hs, bytes.fromhex("005a000000000000") + BANNER) == ProxyConnected()
    assert hs.trailing_data() == BANNER


def test_socks4a_domain_target():
    hs = Socks4aClientHandshake("example.com", 443)
    assert hs.data_to_send() == bytes.fromhex("040101bb00000001") + b"\x00example.com\x00"
    assert answer(hs, bytes.fromhex("005a")) is NEED_DATA
    assert answer(hs, bytes.fromhex("01bb00000000")) == ProxyConnected()


@pytest.mark.parametrize("code, reason", [
    (0x5B, "proxy_connect_failed"), (0x5C, "proxy_auth_rejected"), (0x5D, "proxy_auth_rejected"),
    (0x00, "proxy_bad_reply"), (0x42, "proxy_bad_reply"),
])
def test_socks4_failure_replies(code, reason):
    assert failure(Socks4aClientHandshake("h", 1), bytes([0, code]) + b"\0" * 6).reason == reason


def test_socks4_reply_with_bad_version():
    assert failure(Socks4aClientHandshake("h", 1), b"\x05\x00").reason == "proxy_bad_reply"


def test_socks4a_cannot_carry_ipv6():
    with pytest.raises(LocalProtocolError):
        Socks4aClientHandshake("2001:db8::1", 443)


# -- HTTP CONNECT ----------------------------------------------------------------------

def test_http_connect_with_basic_auth_rfc7617_example():
    hs = HttpConnectClientHandshake("example.com", 443, ProxyCredentials("Aladdin", "open sesame"))
    assert hs.data_to_send() == (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                                 b"Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n")


def test_http_connect_ipv6_target_in_brackets():
    hs = HttpConnectClientHandshake("2001:db8::1", 22)
    assert hs.data_to_send() == b"CONNECT [2001:db8::1]:22 HTTP/1.1\r\nHost: [2001:db8::1]:22\r\n\r\n"


@pytest.mark.parametrize("response", [
    b"HTTP/1.1 200 Connection established\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nProxy-Agent: x\r\nContent-Length: 99\r\n\r\n",
    b"HTTP/1.1 200\n\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
])
def test_http_connect_success_keeps_trailing_bytes(response):
    hs = HttpConnectClientHandshake("h", 22)
    assert answer(hs, response + BANNER) == ProxyConnected()
    assert hs.trailing_data() == BANNER


@pytest.mark.parametrize("credentials, reason", [(None, "proxy_auth_required"),
                                                 (ProxyCredentials("u", "p"), "proxy_auth_rejected")])
def test_http_connect_407(credentials, reason):
    response = (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\n"
                b"Proxy-Authenticate: Basic realm=\"x\"\r\n\r\n")
    error = failure(HttpConnectClientHandshake("h", 22, credentials), response)
    assert error.reason == reason
    assert "407 Proxy Authentication Required" in error.detail and "ntlm, basic" in error.detail.lower()


@pytest.mark.parametrize("status_line, reason", [
    (b"HTTP/1.1 403 Forbidden", "proxy_not_allowed"),
    (b"HTTP/1.1 502 Bad Gateway", "proxy_connect_failed"),
    (b"HTTP/1.1 504 Gateway Timeout", "proxy_connect_failed"),
    (b"HTTP/1.1 301 Moved\x00\xff", "proxy_connect_failed"),
    (b"SSH-2.0-OpenSSH", "proxy_bad_reply"),
    (b"\x05\x00", "proxy_bad_reply"),
    (b"HTTP/1.1 20 OK", "proxy_bad_reply"),
])
def test_http_connect_refusals(status_line, reason):
    error = failure(HttpConnectClientHandshake("h", 22), status_line + b"\r\nContent-Length: 0\r\n\r\n")
    assert error.reason == reason
    assert error.detail.isprintable()


def test_http_connect_oversized_response_head():
    hs = HttpConnectClientHandshake("h", 22)
    hs.receive_data(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: aaaaaaaa\r\n" * 5000)
    with pytest.raises(RemoteProtocolError) as info:
        hs.next_event()
    assert info.value.reason == "proxy_bad_reply" and "exceeds" in info.value.detail


# -- truncation, EOF, misuse -----------------------------------------------------------

CONVERSATIONS = [
    (lambda: Socks5ClientHandshake("h", 1), b"\x05\x00" + SOCKS5_OK_V4),
    (lambda: Socks5ClientHandshake("h", 1, ProxyCredentials("u", "p")), b"\x05\x02\x01\x00" + SOCKS5_OK_V4),
    (lambda: Socks4aClientHandshake("h", 1), bytes.fromhex("005a000000000000")),
    (lambda: HttpConnectClientHandshake("h", 1), b"HTTP/1.1 200 OK\r\n\r\n"),
]


@pytest.mark.parametrize("make, reply", CONVERSATIONS)
def test_every_truncated_answer_needs_data_then_fails_on_eof(make, reply):
    for cut in range(len(reply)):
        hs = make()
        hs.receive_data(reply[:cut])
        assert hs.next_event() is NEED_DATA
        with pytest.raises(LocalProtocolError):
            hs.trailing_data()
        hs.receive_eof()
        with pytest.raises(RemoteProtocolError) as info:
            hs.next_event()
        assert info.value.reason == "proxy_closed"


@pytest.mark.parametrize("args", [("", 1), ("h", 0), ("h", 65536), ("x" * 256, 1), ("h", "80")])
def test_bad_targets_are_local_errors(args):
    with pytest.raises(LocalProtocolError):
        Socks5ClientHandshake(*args)


@pytest.mark.parametrize("make", [
    lambda: Socks5ClientHandshake("h", 1, ProxyCredentials("u" * 256, "p")),
    lambda: Socks5ClientHandshake("h", 1, ProxyCredentials("", "p")),
    lambda: Socks4aClientHandshake("h", 1, ProxyCredentials("a\x00b")),
    lambda: HttpConnectClientHandshake("h", 1, ProxyCredentials("a:b", "p")),
    lambda: HttpConnectClientHandshake("h\r\nX: y", 1),
    lambda: HttpConnectClientHandshake("h", 1, ProxyCredentials("\ud800", "p")),
    lambda: Socks4aClientHandshake("\ud800", 1),
])
def test_bad_credentials_and_hosts_are_local_errors(make):
    with pytest.raises(LocalProtocolError):
        make()


def test_receive_data_after_eof_is_a_local_error():
    hs = Socks5ClientHandshake("h", 1)
    hs.receive_eof()
    with pytest.raises(LocalProtocolError):
        hs.receive_data(b"\x05")


def test_basic_authorization_is_utf8():
    assert basic_authorization(ProxyCredentials("test", "123\u00a3")) == "Basic dGVzdDoxMjPCow=="


# -- parse_proxy_url -------------------------------------------------------------------

@pytest.mark.parametrize("url, spec", [
    ("socks5://127.0.0.1:1080", ProxySpec("socks5", "127.0.0.1", 1080)),
    ("SOCKS5://proxy.example:1080/", ProxySpec("socks5", "proxy.example", 1080)),
    ("socks5://us%40er:p%3Ass%20w%25@127.0.0.1:1080", ProxySpec("socks5", "127.0.0.1", 1080, "us@er", "p:ss w%")),
    ("socks5://j%C3%BCrgen:x@h:1", ProxySpec("socks5", "h", 1, "j\u00fcrgen", "x")),
    ("http://user:p@ss@proxy:3128", ProxySpec("http", "proxy", 3128, "user", "p@ss")),
    ("http://user:@proxy:3128", ProxySpec("http", "proxy", 3128, "user", "")),
    ("http://[2001:DB8:0::1]:3128", ProxySpec("http", "2001:db8::1", 3128)),
    ("socks4a://fred@192.0.2.1:1080", ProxySpec("socks4a", "192.0.2.1", 1080, "fred")),
    ("  socks5://h:65535  ", ProxySpec("socks5", "h", 65535)),
])
def test_parse_proxy_url(url, spec):
    assert parse_proxy_url(url) == spec


@pytest.mark.parametrize("url, fragment", [
    ("127.0.0.1:1080", "expected scheme://"),
    ("", "expected scheme://"),
    ("https://h:443", "unsupported scheme 'https'"),
    ("socks5h://h:1080", "unsupported scheme"),
    ("socks5://h", "missing proxy port"),
    ("socks5://h:", "missing proxy port"),
    ("socks5://h:0", "invalid proxy port"),
    ("socks5://h:65536", "invalid proxy port"),
    ("socks5://h:1e3", "invalid proxy port"),
    ("socks5://h:\u0661\u0662", "invalid proxy port"),
    ("socks5://:1080", "missing proxy host"),
    ("socks5://bad_host!:1080", "invalid proxy host"),
    ("socks5://::1:1080", "in brackets"),
    ("socks5://[::g]:1080", "invalid IPv6"),
    ("socks5://[fe80::1%25eth0]:1080", "invalid IPv6"),
    ("socks5://h:1080/path", "path, query or fragment"),
    ("socks5://h:1080?x=1", "path, query or fragment"),
    ("socks5://u%zz:p@h:1080", "bad percent-encoding in the username"),
    ("socks5://u:%ff@h:1080", "password is not UTF-8"),
    ("socks5://:p@h:1080", "empty username"),
    ("socks5://" + "u" * 256 + ":p@h:1080", "255 bytes"),
    ("socks4a://u:p@h:1080", "SOCKS4a has no passwords"),
    ("socks4a://a%00b@h:1080", "without NUL"),
    ("http://a%3Ab:p@h:3128", "cannot contain ':'"),
])
def test_parse_proxy_url_problems(url, fragment):
    with pytest.raises(ConfigError) as info:
        parse_proxy_url(url)
    assert all(p.key == "upstream_proxy" for p in info.value.problems)
    assert any(fragment in p.message for p in info.value.problems), info.value.problems


def test_parse_proxy_url_reports_every_problem_and_never_the_password():
    with pytest.raises(ConfigError) as info:
        parse_proxy_url("gopher://alice:s3cr3tPW@bad!host:99999/x")
    assert len(info.value.problems) == 4
    assert "s3cr3tPW" not in str(info.value)


def test_password_is_not_in_repr():
    spec = parse_proxy_url("socks5://alice:s3cr3tPW@h:1080")
    assert "s3cr3tPW" not in repr(spec) and "s3cr3tPW" not in repr(spec.credentials)
    assert spec.credentials == ProxyCredentials("alice", "s3cr3tPW")


@pytest.mark.parametrize("url, kind", [("socks5://u:p@h:1", Socks5ClientHandshake),
                                       ("socks4a://u@h:1", Socks4aClientHandshake),
                                       ("http://u:p@h:1", HttpConnectClientHandshake)])
def test_handshake_for_picks_the_scheme(url, kind):
    hs = handshake_for(parse_proxy_url(url), "example.com", 443)
    assert isinstance(hs, kind) and hs.credentials == parse_proxy_url(url).credentials
    with pytest.raises(LocalProtocolError):
        handshake_for(ProxySpec("ftp", "h", 1), "example.com", 443)


# -- fuzz ------------------------------------------------------------------------------

def split(data, cuts):
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def run(make, chunks, eof=False):
    """Feed ``chunks`` (then EOF); return (events, error reason, bytes sent, trailing data)."""
    hs, events, error, sent = make(), [], None, b""
    try:
        for chunk in chunks + ([None] if eof else []):
            hs.receive_eof() if chunk is None else hs.receive_data(chunk)
            sent += hs.data_to_send()
            event = hs.next_event()
            sent += hs.data_to_send()
            if event is not NEED_DATA and event is not PAUSED:
                events.append(event)
    except RemoteProtocolError as exc:
        error = exc.reason
    return events, error, sent, hs.trailing_data() if hs.connected else None


MAKERS = [make for make, _ in CONVERSATIONS] + [
    lambda: Socks5ClientHandshake("2001:db8::1", 443, ProxyCredentials("u", "p")),
    lambda: HttpConnectClientHandshake("h", 1, ProxyCredentials("u", "p")),
]


@given(st.sampled_from(MAKERS), st.binary(max_size=200), st.lists(st.integers(0, 300), max_size=12),
       st.booleans(), st.sampled_from([b"", b"\x05\x00", b"\x05\x02\x01\x00", b"\x00\x5a", b"HTTP/1.1 "]))
def test_fuzz_arbitrary_answers_only_give_connected_or_remote_errors(make, data, cuts, eof, prefix):
    events, _, _, _ = run(make, split(prefix + data, cuts), eof=eof)
    assert all(isinstance(e, ProxyConnected) for e in events) and len(events) <= 1


@given(st.sampled_from(CONVERSATIONS), st.binary(max_size=64), st.lists(st.integers(0, 300), max_size=20),
       st.booleans())
def test_fuzz_any_chunking_gives_the_same_outcome(conversation, extra, cuts, eof):
    make, reply = conversation
    whole = run(make, [reply + extra], eof=eof)
    assert whole[0] and whole[3] == extra
    assert run(make, split(reply + extra, cuts), eof=eof) == whole
    assert run(make, [bytes([b]) for b in reply + extra], eof=eof) == whole


@given(st.text(max_size=80) | st.builds("{}://{}".format, st.sampled_from(["http", "socks5", "socks4a"]),
                                        st.text(max_size=60)))
def test_fuzz_parse_proxy_url_gives_a_spec_or_a_config_error(url):
    try:
        spec = parse_proxy_url(url)
    except ConfigError as error:
        assert error.problems and all(p.key == "upstream_proxy" for p in error.problems)
    else:
        assert spec.scheme in ("http", "socks5", "socks4a") and 0 < spec.port <= 65535
