"""Each censor model on scripted flows (pure: no sockets, no clock)."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onehop.core.serverentry import ServerEntry
from onehop.lab.blocking import IPBlocklist, PortBlock, Throttle
from onehop.lab.dpi import HTTPWhitelist, SSHBannerDPI, parse_request_head
from onehop.lab.fet import FullyEncryptedTrafficRule, analyze_first_packet
from onehop.lab.flows import Action, FlowTracker

from .helpers import SSH_CLIENT_BANNER, SSH_SERVER_BANNER, C, S, make_flow, ossh_first_flight, play

HTTP_REQUEST = b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\n\r\n"
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 512\r\n\r\n"


def actions(verdicts):
    return [v.action for v in verdicts]


# -- IP blocklist, port blocking, throttling ---------------------------------------------

def test_ip_blocklist_learned_from_server_entries():
    entry = ServerEntry({"ipAddress": "10.66.2.3"})
    censor = IPBlocklist.from_entries([entry])
    assert actions(play(censor, [], make_flow(server=("10.66.2.3", 443)))) == [Action.DROP]
    assert actions(play(censor, [(C, b"x")], make_flow(server=("10.66.2.4", 443)))) == [Action.PASS] * 2


def test_ip_blocklist_cuts_open_flows_at_their_next_packet():
    censor = IPBlocklist()
    flow = make_flow()
    tracker = FlowTracker(censor)
    tracker.open(flow, 0)
    assert tracker.data(flow, C, b"hello", 0.1).action is Action.PASS
    censor.learn([flow.server.ip])
    assert tracker.data(flow, S, b"world", 0.2).action is Action.DROP


def test_port_block_resets_only_its_ports():
    censor = PortBlock([22])
    assert actions(play(censor, [], make_flow(server=("10.66.2.1", 22)))) == [Action.RESET]
    assert actions(play(censor, [], make_flow(server=("10.66.2.1", 443)))) == [Action.PASS]


def test_throttle_after_n_bytes():
    verdicts = play(Throttle(after_bytes=100, rate=1000), [(C, b"a" * 60), (S, b"b" * 40), (C, b"c")])
    assert actions(verdicts) == [Action.PASS, Action.PASS, Action.PASS, Action.THROTTLE]
    with pytest.raises(ValueError):
        Throttle(10, 0)


# -- SSH DPI -----------------------------------------------------------------------------

@pytest.mark.parametrize("script", [
    [(S, SSH_SERVER_BANNER), (C, SSH_CLIENT_BANNER)],      # the server speaks first
    [(C, SSH_CLIENT_BANNER)],
    [(C, b"ssh-1.99-lowercase still matches l7-filter\r\n")],
])
def test_ssh_dpi_blocks_an_ssh_banner_in_either_direction(script):
    verdicts = play(SSHBannerDPI(), script)
    assert verdicts[1].action is Action.RESET


@pytest.mark.parametrize("prefix", [False, True])
def test_ssh_dpi_passes_ossh(prefix):
    script = [(C, chunk) for chunk in ossh_first_flight(prefix)] + [(S, os.urandom(900))]
    assert set(actions(play(SSHBannerDPI(), script))) == {Action.PASS}


def test_ssh_dpi_only_looks_at_the_first_payload_of_each_direction():
    assert set(actions(play(SSHBannerDPI(), [(C, b"hello"), (C, SSH_CLIENT_BANNER)]))) == {Action.PASS}


# -- HTTP whitelisting ---------------------------------------------------------------------

def test_parse_request_head():
    head = parse_request_head(HTTP_REQUEST + b"\x00\x01binary")
    assert head is not None and head.method == "GET" and head.target == "/index.html"
    assert head.header("host") == "www.example.com" and head.complete and head.trailing == 8
    assert parse_request_head(b"GET /x HTTP/1.1\r\nHost: a") .complete is False
    for bad in (b"GET /x HTTP/2\r\n\r\n", b"get /x HTTP/1.1\r\n\r\n", b"FOO /x HTTP/1.1\r\n\r\n",
                b"GET /x HTTP/1.1\r\n\x00bad\r\n\r\n", b"GET  HTTP/1.1\r\n", os.urandom(64)):
        assert parse_request_head(bad) is None, bad


def test_http_whitelist_passes_http():
    assert set(actions(play(HTTPWhitelist(), [(C, HTTP_REQUEST), (S, HTTP_RESPONSE), (C, b"\x00")]))) == {
        Action.PASS}


@pytest.mark.parametrize("script, reason", [
    ([(S, SSH_SERVER_BANNER)], "server spoke first"),
    ([(C, SSH_CLIENT_BANNER)], "not an HTTP request"),
    ([(C, b"GET /x HTTP/1.1\r\nAccept: */*\r\n\r\n")], "without a Host"),
    ([(C, HTTP_REQUEST), (S, SSH_SERVER_BANNER)], "not an HTTP response"),
])
def test_http_whitelist_blocks_everything_else(script, reason):
    verdicts = play(HTTPWhitelist(), script)
    assert verdicts[-1].action is Action.DROP and reason in verdicts[-1].reason


def test_http_whitelist_blocks_ossh_and_passes_prefixed_ossh():
    plain = [(C, b"".join(ossh_first_flight(False)))]
    assert play(HTTPWhitelist(), plain)[-1].action is Action.DROP
    head, rest, line = ossh_first_flight(True)
    # The server answers a prefixed client with its own HTTP-response prefix.
    script = [(C, head), (C, rest + line), (S, HTTP_RESPONSE + os.urandom(600))]
    assert set(actions(play(HTTPWhitelist(), script))) == {Action.PASS}


def test_single_message_whitelist_needs_the_prefix_on_its_own():
    head, rest, line = ossh_first_flight(True)
    glued = play(HTTPWhitelist(single_message=True), [(C, head + rest + line)])
    assert glued[-1].action is Action.DROP and "glued" in glued[-1].reason
    split = play(HTTPWhitelist(single_message=True), [(C, head), (C, rest + line)])
    assert set(actions(split)) == {Action.PASS}


# -- the fully-encrypted-traffic rule (Wu et al.) -----------------------------------------

def random_without_exemption(n: int, rng: random.Random) -> bytes:
    while True:
        data = rng.randbytes(n)
        if not analyze_first_packet(data).exempt:
            return data


@pytest.mark.parametrize("payload, exemption", [
    (b"\x16\x03\x01" + bytes(range(0x80, 0xC0)) * 3, "Ex5"),
    (b"GET " + bytes([0xF0, 0x0F]) * 100, "Ex5"),
    (b"abcdef" + bytes([0xF0, 0x0F]) * 100, "Ex2"),
    (bytes([0x01, 0xFE]) * 10 + b"A" * 21 + bytes([0x0F, 0xF0]) * 100, "Ex4"),
    (b"\x00" * 200, "Ex1"),
    (b"\xff" * 200, "Ex1"),
    (b"\x0f55" * 60, "Ex3"),
])
def test_fet_exemptions(payload, exemption):
    assert analyze_first_packet(payload).exemption == exemption


def test_fet_boundaries_from_the_paper():
    rng = random.Random(7)
    assert analyze_first_packet(b"get " + random_without_exemption(196, rng)).exemption is None  # case-sensitive
    assert analyze_first_packet(b"abcde" + b"\x80" + random_without_exemption(194, rng)).exemption is None
    twenty = bytes([0xF0, 0x0F]) * 20 + b"A" * 20 + bytes([0xF0, 0x0F]) * 20
    assert analyze_first_packet(twenty).longest_printable_run == 20 and not analyze_first_packet(twenty).exempt
    # exactly the 40 single-byte patterns with 4 of 8 bits set are blocked (section 4.1)
    blocked = [b for b in range(256) if not analyze_first_packet(bytes([b]) * 64).exempt]
    assert len(blocked) == 40 and all(bin(b).count("1") == 4 for b in blocked)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=2000))
def test_fet_analysis_is_consistent(data):
    a = analyze_first_packet(data)
    assert 0 <= a.popcount_per_byte <= 8 and 0 <= a.printable_fraction <= 1
    assert a.leading_printable <= a.longest_printable_run <= len(data)
    if a.leading_printable >= 6 or a.longest_printable_run > 20 or a.printable_fraction > 0.5:
        assert a.exempt


def test_fet_blocks_ossh_and_exempts_the_prefix_and_ssh():
    rng = random.Random(1)
    for _ in range(20):
        seed = bytes(rng.randrange(0x80, 0x100) for _ in range(16))  # not printable: no chance Ex2
        flight = b"".join(ossh_first_flight(False, seed=seed))
        assert play(FullyEncryptedTrafficRule(), [(C, flight)])[-1].action is Action.DROP
    head, rest, _ = ossh_first_flight(True)
    assert play(FullyEncryptedTrafficRule(), [(C, head + rest)])[-1].action is Action.PASS
    assert play(FullyEncryptedTrafficRule(), [(C, SSH_CLIENT_BANNER)])[-1].action is Action.PASS


def test_fet_only_inspects_the_first_client_packet():
    rng = random.Random(2)
    script = [(S, random_without_exemption(300, rng)), (C, b"hello, world"), (C, random_without_exemption(300, rng))]
    assert set(actions(play(FullyEncryptedTrafficRule(), script))) == {Action.PASS}


def test_fet_residual_censorship_and_probability():
    rng = random.Random(3)
    censor = FullyEncryptedTrafficRule(residual_seconds=180)
    tracker = FlowTracker(censor)
    play(censor, [(C, random_without_exemption(100, rng))], make_flow(1), tracker, at=0)
    assert tracker.open(make_flow(2), 100).action is Action.DROP            # same 3-tuple, within 180 s
    assert tracker.open(make_flow(3, server=("10.66.2.9", 443)), 100).action is Action.PASS
    assert tracker.open(make_flow(4), 181).action is Action.PASS
    never = FullyEncryptedTrafficRule(block_probability=0.0)
    assert play(never, [(C, random_without_exemption(100, rng))])[-1].action is Action.PASS
    sometimes = FullyEncryptedTrafficRule(block_probability=0.26, rng=random.Random(4), residual_seconds=0)
    blocked = sum(play(sometimes, [(C, random_without_exemption(100, rng))], make_flow(n))[-1].blocks
                  for n in range(400))
    assert 70 < blocked < 140
    with pytest.raises(ValueError):
        FullyEncryptedTrafficRule(block_probability=1.5)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_request_parsing_never_raises_and_random_bytes_are_not_http(data):
    head = parse_request_head(data)
    if head is not None:
        assert data.startswith(head.method.encode() + b" ")


@settings(max_examples=100, deadline=None)
@given(method=st.sampled_from(["GET", "POST", "HEAD", "PUT"]), path=st.from_regex(r"/[a-z0-9]{0,12}", fullmatch=True),
       host=st.from_regex(r"www\.[a-z]{1,10}\.com", fullmatch=True), tail=st.binary(max_size=64))
def test_generated_request_heads_pass_the_whitelist(method, path, host, tail):
    request = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n".encode()
    assert play(HTTPWhitelist(), [(C, request + tail)])[-1].action is Action.PASS
    strict = play(HTTPWhitelist(single_message=True), [(C, request + tail)])[-1].action
    assert strict is (Action.DROP if tail else Action.PASS)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=20))
def test_only_the_first_chunk_matters_to_the_fet_rule(chunks):
    rng = random.Random(5)
    first = random_without_exemption(200, rng)
    verdicts = play(FullyEncryptedTrafficRule(), [(C, first)] + [(C, c) for c in chunks])
    assert all(v.action is Action.DROP for v in verdicts[1:])
    exempt = play(FullyEncryptedTrafficRule(), [(C, b"GET / HTTP/1.1\r\n")] + [(C, first)] + [(C, c) for c in chunks])
    assert all(v.action is Action.PASS for v in exempt)
