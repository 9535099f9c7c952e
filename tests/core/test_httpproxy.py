"""HTTP proxy server side: CONNECT, absolute-form rewriting, error responses, limits, fuzz."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.core.httpproxy import (
    CONNECTION_ESTABLISHED,
    NEED_DATA,
    PAUSED,
    ErrorResponse,
    HttpProxyServer,
    HttpRequestReceived,
    RequestRefused,
    State,
    TargetConnected,
    TunnelRequested,
    error_response,
)
from onehop.errors import LocalProtocolError, RemoteProtocolError


def parse(data, **kwargs):
    server = HttpProxyServer(**kwargs)
    server.receive_data(data)
    return server, server.next_event()


def remote_error(data, **kwargs):
    server = HttpProxyServer(**kwargs)
    server.receive_data(data)
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert server.state is State.ERROR
    return info.value, server.data_to_send()


# -- CONNECT ---------------------------------------------------------------------------

def test_connect_then_established():
    server, event = parse(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                          b"User-Agent: curl/8\r\n\r\n\x16\x03\x01early")
    assert event == TunnelRequested("example.com", 443, (("Host", "example.com:443"), ("User-Agent", "curl/8")))
    assert server.next_event() is PAUSED
    server.send(TargetConnected())
    assert server.data_to_send() == b"HTTP/1.1 200 Connection established\r\n\r\n" == CONNECTION_ESTABLISHED
    assert server.state is State.RELAY
    assert server.trailing_data() == b"\x16\x03\x01early"
    assert server.trailing_data() == b""


@pytest.mark.parametrize("target, host, port", [
    ("[2001:DB8:0:0:0:0:0:1]:443", "2001:db8::1", 443),
    ("[::ffff:192.0.2.1]:22", "::ffff:192.0.2.1", 22),
    ("[2001:db8:0:0:1:0:0:1]:8443", "2001:db8::1:0:0:1", 8443),
    ("192.0.2.1:65535", "192.0.2.1", 65535),
    ("under_score.example:1", "under_score.example", 1),
])
def test_connect_targets(target, host, port):
    _, event = parse(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
    assert (event.host, event.port) == (host, port)


@pytest.mark.parametrize("target", [
    "example.com", "example.com:", "example.com:0", "example.com:65536", "example.com:https",
    "[2001:db8::1]", "[2001:db8::1", "[fe80::1%25eth0]:443", "[not-v6]:443", "2001:db8::1:443",
    "exa%6dple.com:443", "user@example.com:443", "http://example.com:443", ":443",
])
def test_bad_connect_targets_get_400(target):
    error, sent = remote_error(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
    assert error.reason == "http_bad_target"
    assert sent.startswith(b"HTTP/1.1 400 Bad Request\r\n")


# -- absolute-form plain HTTP ----------------------------------------------------------

def test_absolute_form_is_rewritten_to_origin_form():
    request = (b"GET http://example.com/path?q=1#frag HTTP/1.1\r\n"
               b"Host: example.com\r\n"
               b"User-Agent: test\r\n"
               b"Proxy-Connection: keep-alive\r\n"
               b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
               b"Connection: keep-alive, X-Secret\r\n"
               b"X-Secret: 1\r\n"
               b"Keep-Alive: 300\r\n"
               b"TE: trailers\r\n"
               b"Upgrade: websocket\r\n"
               b"Accept: */*\r\n\r\n")
    server, event = parse(request)
    assert isinstance(event, HttpRequestReceived)
    assert (event.method, event.host, event.port) == ("GET", "example.com", 80)
    assert event.upstream_head == (b"GET /path?q=1 HTTP/1.1\r\n"
                                   b"Host: example.com\r\n"
                                   b"User-Agent: test\r\n"
                                   b"Accept: */*\r\n"
                                   b"Connection: close\r\n\r\n")
    assert ("Proxy-Authorization", "Basic Zm9vOmJhcg==") in event.headers
    server.send(TargetConnected())
    assert server.data_to_send() == b""
    assert server.state is State.RELAY


@pytest.mark.parametrize("target, host, port, origin, host_header", [
    ("http://example.com", "example.com", 80, "/", "example.com"),
    ("http://example.com?x=1", "example.com", 80, "/?x=1", "example.com"),
    ("http://example.com:/a", "example.com", 80, "/a", "example.com"),
    ("HTTP://Example.COM:8080/a/b", "Example.COM", 8080, "/a/b", "Example.COM:8080"),
    ("http://[2001:db8::0:1]:8080/x", "2001:db8::1", 8080, "/x", "[2001:db8::1]:8080"),
    ("http://192.0.2.1:80/", "192.0.2.1", 80, "/", "192.0.2.1"),
])
def test_absolute_targets(target, host, port, origin, host_header):
    _, event = parse(f"GET {target} HTTP/1.0\r\nHost: wrong.example\r\n\r\n".encode())
    assert (event.host, event.port) == (host, port)
    assert event.upstream_head == (f"GET {origin} HTTP/1.0\r\nHost: {host_header}\r\n"
                                   f"Connection: close\r\n\r\n").encode()


def test_host_is_added_when_missing_and_body_is_trailing_data():
    server, event = parse(b"POST http://example.com/form HTTP/1.0\r\nContent-Length: 7\r\n"
                          b"Connection: content-length, host\r\n\r\nabc=def")
    assert event.upstream_head == (b"POST /form HTTP/1.0\r\nHost: example.com\r\nContent-Length: 7\r\n"
                                   b"Connection: close\r\n\r\n")
    server.send(TargetConnected())
    assert server.trailing_data() == b"abc=def"


def test_obs_text_header_values_are_relayed_byte_for_byte():
    _, event = parse(b"GET http://h/ HTTP/1.1\r\nX-Name: caf\xe9\tok\r\n\r\n")
    assert b"X-Name: caf\xe9\tok\r\n" in event.upstream_head
    assert ("X-Name", "caf\u00e9\tok") in event.headers


def test_leading_blank_lines_and_bare_lf_are_accepted():
    _, event = parse(b"\r\n\n\r\nGET http://h/ HTTP/1.1\nHost: h\n\nbody")
    assert event.upstream_head == b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("request_line, status", [
    (b"GET / HTTP/1.1", 400),                    # origin form: not a proxy request
    (b"OPTIONS * HTTP/1.1", 400),
    (b"GET https://example.com/ HTTP/1.1", 501),
    (b"GET ftp://example.com/ HTTP/1.1", 501),
])
def test_requests_we_do_not_proxy_are_refused(request_line, status):
    server, event = parse(request_line + b"\r\nHost: example.com\r\n\r\n")
    assert isinstance(event, RequestRefused) and event.status == status
    assert server.data_to_send().startswith(f"HTTP/1.1 {status} ".encode())
    assert server.state is State.CLOSED


@pytest.mark.parametrize("head, reason", [
    (b"GET  http://h/ HTTP/1.1\r\n\r\n", "http_bad_request_line"),
    (b"GET http://h/\r\n\r\n", "http_bad_request_line"),
    (b"GET http://h/ HTTP/2.0\r\n\r\n", "http_bad_request_line"),
    (b"GET http://h/ http/1.1\r\n\r\n", "http_bad_request_line"),
    (b"G@T http://h/ HTTP/1.1\r\n\r\n", "http_bad_request_line"),
    (b"GET http://h/\xff HTTP/1.1\r\n\r\n", "http_bad_request_line"),
    (b"GET http://h/ HTTP/1.1\r\nHost : h\r\n\r\n", "http_bad_header"),
    (b"GET http://h/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", "http_bad_header"),
    (b"GET http://h/ HTTP/1.1\r\nno colon\r\n\r\n", "http_bad_header"),
    (b"GET http://h/ HTTP/1.1\r\nX: a\x00b\r\n\r\n", "http_bad_header"),
    (b"GET http://h/ HTTP/1.1\r\nX: a\rb\r\n\r\n", "http_bad_header"),
    (b"GET http://h/ HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n", "http_bad_header"),
    (b"POST http://h/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "http_bad_framing"),
    (b"POST http://h/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", "http_bad_framing"),
    (b"POST http://h/ HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n", "http_bad_framing"),
    (b"POST http://h/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "http_bad_framing"),
    (b"GET http://user:pw@h/ HTTP/1.1\r\n\r\n", "http_bad_target"),
    (b"GET http:///x HTTP/1.1\r\n\r\n", "http_bad_target"),
])
def test_malformed_heads_raise_and_queue_400(head, reason):
    error, sent = remote_error(head)
    assert error.reason == reason
    assert sent.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert sent.endswith(b"\r\n\r\n" + b"400 Bad Request\n" + error.detail.encode() + b"\n")


def test_repeated_equal_content_lengths_are_accepted():
    _, event = parse(b"POST http://h/ HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc")
    assert isinstance(event, HttpRequestReceived)


# -- limits, truncation, EOF -----------------------------------------------------------

def test_head_over_64_kib_is_refused_431():
    head = b"GET http://h/ HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 70000 + b"\r\n\r\n"
    error, sent = remote_error(head)
    assert error.reason == "http_head_too_large"
    assert "65536" in error.detail
    assert sent.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def test_head_limit_is_exact():
    head = b"GET http://h/ HTTP/1.1\r\nX: " + b"a" * 70 + b"\r\n\r\n"
    server, event = parse(head + b"body", max_head_size=len(head))
    assert isinstance(event, HttpRequestReceived)
    server.send(TargetConnected())
    assert server.trailing_data() == b"body"
    error, _ = remote_error(head, max_head_size=len(head) - 1)
    assert error.reason == "http_head_too_large"


def test_unterminated_head_fails_as_soon_as_the_limit_is_reached():
    server = HttpProxyServer(max_head_size=1000)
    for _ in range(99):
        server.receive_data(b"X-Pad: 1\r\n")
        assert server.next_event() is NEED_DATA
    server.receive_data(b"X-Pad: 1\r\n")
    with pytest.raises(RemoteProtocolError):
        server.next_event()


def test_endless_blank_lines_count_against_the_limit():
    error, _ = remote_error(b"\r\n" * 600, max_head_size=1000)
    assert error.reason == "http_head_too_large"


@pytest.mark.parametrize("message", [
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
])
def test_every_truncation_needs_data_then_fails_on_eof(message):
    for cut in range(len(message)):
        server = HttpProxyServer()
        server.receive_data(message[:cut])
        assert server.next_event() is NEED_DATA
        server.receive_eof()
        with pytest.raises(RemoteProtocolError) as info:
            server.next_event()
        assert info.value.reason == "http_eof"
        assert server.data_to_send() == b""


def test_eof_after_the_head_is_not_an_error():
    server, event = parse(b"CONNECT h:1 HTTP/1.1\r\n\r\nlast")
    assert event == TunnelRequested("h", 1, ())
    server.receive_eof()
    assert server.next_event() is PAUSED
    assert server.eof_received
    server.send(TargetConnected())
    assert server.trailing_data() == b"last"


# -- responses and misuse --------------------------------------------------------------

def test_error_response_bytes():
    assert error_response(502) == (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                   b"Content-Length: 16\r\nConnection: close\r\n\r\n502 Bad Gateway\n")


@pytest.mark.parametrize("status, line", [
    (400, b"HTTP/1.1 400 Bad Request\r\n"), (403, b"HTTP/1.1 403 Forbidden\r\n"),
    (502, b"HTTP/1.1 502 Bad Gateway\r\n"), (504, b"HTTP/1.1 504 Gateway Timeout\r\n"),
])
def test_caller_error_responses_close(status, line):
    server, _ = parse(b"CONNECT h:443 HTTP/1.1\r\n\r\n")
    server.send(ErrorResponse(status, "tunnel \x00down\r\n"))
    sent = server.data_to_send()
    assert sent.startswith(line)
    assert sent.endswith(b"tunnel ?down??\n")
    head, body = sent.split(b"\r\n\r\n", 1)
    assert f"Content-Length: {len(body)}".encode() in head
    assert server.state is State.CLOSED


def test_misuse_is_a_local_error():
    server = HttpProxyServer()
    with pytest.raises(LocalProtocolError):
        server.send(TargetConnected())
    with pytest.raises(LocalProtocolError):
        server.trailing_data()
    with pytest.raises(LocalProtocolError):
        error_response(418)
    server.receive_data(b"CONNECT h:1 HTTP/1.1\r\n\r\n")
    server.next_event()
    with pytest.raises(LocalProtocolError):
        server.send("200 OK")
    server.send(TargetConnected())
    with pytest.raises(LocalProtocolError):
        server.send(ErrorResponse(502))
    server.receive_eof()
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"x")


def test_next_event_after_an_error_is_a_local_error():
    server = HttpProxyServer()
    server.receive_data(b"nonsense\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        server.next_event()
    with pytest.raises(LocalProtocolError):
        server.next_event()


# -- fuzz ------------------------------------------------------------------------------

def split(data, cuts):
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def run(chunks, eof=False, max_head_size=4096):
    """Feed ``chunks`` (then EOF); return (events, error reason, bytes sent, trailing data)."""
    server, events, error = HttpProxyServer(max_head_size=max_head_size), [], None
    try:
        for chunk in chunks + ([None] if eof else []):
            server.receive_eof() if chunk is None else server.receive_data(chunk)
            event = server.next_event()
            if event is not NEED_DATA and event is not PAUSED:
                events.append(event)
                if not isinstance(event, RequestRefused):
                    server.send(TargetConnected())
    except RemoteProtocolError as exc:
        error = exc.reason
    trailing = server.trailing_data() if server.state in (State.RELAY, State.CLOSED) else None
    return events, error, server.data_to_send(), trailing


OUR_EVENTS = (TunnelRequested, HttpRequestReceived, RequestRefused)
head_bytes = st.sampled_from([b"GET ", b"CONNECT ", b"http://", b"[::1]", b":80", b" HTTP/1.1",
                              b"\r\n", b"\n", b"Host: h", b": ", b"\r\n\r\n", b"Connection: a", b"%"])


@given(st.lists(st.one_of(st.binary(max_size=20), head_bytes), max_size=30),
       st.lists(st.integers(0, 600), max_size=12), st.booleans())
def test_fuzz_arbitrary_bytes_only_give_our_events_or_remote_errors(parts, cuts, eof):
    data = b"".join(parts)
    events, _, _, _ = run(split(data, cuts), eof=eof, max_head_size=256)
    assert len(events) <= 1 and all(isinstance(e, OUR_EVENTS) for e in events)


token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^_`|~",
                min_size=1, max_size=12)
host = st.one_of(st.from_regex(r"[A-Za-z0-9._~-]{1,20}", fullmatch=True),
                 st.ip_addresses(v=6).map(lambda a: f"[{a.exploded}]"), st.ip_addresses(v=4).map(str))


@st.composite
def valid_heads(draw):
    authority = draw(host) + draw(st.sampled_from(["", ":", ":1", ":8080", ":65535"]))
    if draw(st.booleans()):
        line = f"CONNECT {draw(host)}:{draw(st.integers(1, 65535))} HTTP/1.1"
    else:
        path = draw(st.from_regex(r"(/[A-Za-z0-9/?=&%._~-]{0,30})?", fullmatch=True))
        method = draw(token.filter(lambda t: t != "CONNECT"))
        line = f"{method} {draw(st.sampled_from(['http', 'HTTP', 'https']))}://{authority}{path} HTTP/1.1"
    names = st.one_of(token, st.sampled_from(["Connection", "Proxy-Connection", "Keep-Alive", "TE"]))
    values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                     max_size=30).map(str.strip)
    fields = draw(st.lists(st.tuples(names, values), max_size=8))
    fields = [(n, v) for n, v in fields if n.lower() not in ("host", "content-length", "transfer-encoding")]
    crlf = draw(st.sampled_from(["\r\n", "\n"]))
    head = crlf.join([line] + [f"{n}: {v}" for n, v in fields]) + crlf + crlf
    return draw(st.sampled_from(["", "\r\n"])).encode() + head.encode("latin-1") + draw(st.binary(max_size=64))


@given(valid_heads(), st.lists(st.integers(0, 600), max_size=20), st.booleans())
def test_fuzz_any_chunking_gives_the_same_outcome(message, cuts, eof):
    whole = run([message], eof=eof)
    assert whole[1] is None and isinstance(whole[0][0], OUR_EVENTS)
    assert run(split(message, cuts), eof=eof) == whole
    assert run([bytes([b]) for b in message], eof=eof) == whole
