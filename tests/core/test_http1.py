"""The sans-IO HTTP/1.1 response parser: framing, truncation, fuzzing."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.core.http1 import BodyData, ResponseComplete, ResponseHead, ResponseParser, build_request
from onehop.core.sansio import NEED_DATA
from onehop.errors import HTTPReason, LocalProtocolError, RemoteProtocolError


def parse(chunks, eof=True, head_only=False):
    parser = ResponseParser(head_only=head_only)
    head, body, complete = None, b"", False
    for chunk in list(chunks) + [None]:
        if chunk is None:
            if eof:
                parser.receive_eof()
        else:
            parser.receive_data(chunk)
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, ResponseHead):
                head = event
            elif isinstance(event, BodyData):
                body += event.data
            elif isinstance(event, ResponseComplete):
                complete = True
                break
        if complete:
            break
    return head, body, complete


def test_content_length_body():
    head, body, done = parse([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\nhel", b"lo"], eof=False)
    assert head.status == 200 and head.header("etag") == '"x"' and body == b"hello" and done


def test_chunked_body_with_extensions_and_trailer():
    raw = b"HTTP/1.1 206 Partial\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
    for split in range(1, len(raw)):
        head, body, done = parse([raw[:split], raw[split:]], eof=False)
        assert (head.status, body, done) == (206, b"hello", True)


def test_close_delimited_body_ends_at_eof():
    head, body, done = parse([b"HTTP/1.0 200 OK\r\n\r\nabc", b"def"])
    assert body == b"abcdef" and done


def test_truncated_content_length_is_an_error():
    with pytest.raises(RemoteProtocolError) as info:
        parse([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"])
    assert info.value.reason is HTTPReason.TRUNCATED


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status):
    head, body, done = parse([f"HTTP/1.1 {status} X\r\nContent-Length: 9\r\n\r\n".encode()], eof=False)
    assert head.status == status and body == b"" and done


def test_head_only_has_no_body():
    _, body, done = parse([b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"], eof=False, head_only=True)
    assert body == b"" and done


@pytest.mark.parametrize("raw", [b"HTTP/2 200\r\n\r\n", b"HTTP/1.1 20 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nbad\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"])
def test_malformed_responses(raw):
    with pytest.raises(RemoteProtocolError):
        parse([raw])


def test_oversized_head():
    with pytest.raises(RemoteProtocolError) as info:
        parse([b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 70000], eof=False)
    assert info.value.reason is HTTPReason.HEAD_TOO_LARGE


def test_request_builder_refuses_header_injection():
    assert build_request("GET", "/x", "h", {"Range": "bytes=5-"}).startswith(b"GET /x HTTP/1.1\r\nHost: h\r\n")
    with pytest.raises(LocalProtocolError):
        build_request("GET", "/", "h", {"X": "a\r\nInjected: 1"})


@given(st.lists(st.binary(max_size=200), max_size=8), st.booleans())
def test_fuzz_only_our_errors(chunks, eof):
    try:
        parse([b"HTTP/1.1 200 OK\r\n"] + chunks, eof=eof)
    except RemoteProtocolError:
        pass
