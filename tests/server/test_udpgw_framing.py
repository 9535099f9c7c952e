"""udpgw framing against Psiphon's vectors (every case), plus round trips and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.core import udpgw
from onehop.core.udpgw import (FLAG_DNS, FLAG_IPV6, FLAG_REBIND, KeepaliveReceived, PacketReceived,
                               UdpgwParser, encode_keepalive, encode_packet)
from onehop.errors import LocalProtocolError, RemoteProtocolError
from tests.conftest import load_vectors

CASES = load_vectors("udpgw")["cases"]
WRITER_CASES = [c for c in CASES if c["source"] == "go_writer"]


def parse_all(data: bytes) -> list:
    parser = UdpgwParser()
    parser.receive_data(data)
    return parser.events()


def test_every_vector_case_is_covered():
    assert {c["name"] for c in CASES} == {"ipv4_dns", "ipv6", "ipv4_downstream_reply_flags0", "keepalive"}


@pytest.mark.parametrize("case", WRITER_CASES, ids=lambda c: c["name"])
def test_encoder_writes_the_go_bytes(case):
    message = encode_packet(case["conn_id"], bytes.fromhex(case["dest_ip_bytes"]), case["dest_port"],
                            bytes.fromhex(case["payload"]), case["flags"] & ~FLAG_IPV6)
    assert message.hex() == case["message"]
    assert int.from_bytes(message[:2], "little") == case["size_field"]


@pytest.mark.parametrize("case", WRITER_CASES, ids=lambda c: c["name"])
def test_parser_reads_what_go_parsed(case):
    (event,) = parse_all(bytes.fromhex(case["message"]))
    assert isinstance(event, PacketReceived)
    assert event.conn_id == case["parsed_conn_id"]
    assert event.address.hex() == case["parsed_remote_ip"]
    assert event.port == case["parsed_remote_port"]
    assert event.payload.hex() == case["parsed_payload"]
    assert event.forward_dns is case["parsed_forward_dns"]
    assert event.discard_existing is case["parsed_discard_existing"]
    assert event.ip == case["dest_ip"]
    assert len(bytes.fromhex(case["message"])) - len(event.payload) == case["parsed_preamble_size"]


def test_keepalive_vector():
    (case,) = [c for c in CASES if c["name"] == "keepalive"]
    assert encode_keepalive(case["conn_id"]).hex() == case["message"]
    events = parse_all(bytes.fromhex(case["parser_check_stream"]))
    assert events[0] == KeepaliveReceived(0)
    assert isinstance(events[1], PacketReceived) and events[1].conn_id == 7  # as the Go parser returned


def test_byte_by_byte_feeding_gives_the_same_events():
    stream = b"".join(bytes.fromhex(c["message"]) for c in CASES)
    parser = UdpgwParser()
    found = []
    for i in range(len(stream)):
        parser.receive_data(stream[i:i + 1])
        found.extend(parser.events())
    assert found == parse_all(stream)
    assert len(found) == len(CASES) and parser.buffered == 0


@pytest.mark.parametrize("raw, reason", [
    (b"\x02\x00\x00\x00", "udpgw_bad_size"),                        # shorter than flags + conn_id
    ((udpgw.MAX_SIZE_FIELD + 1).to_bytes(2, "little"), "udpgw_bad_size"),
    (b"\x05\x00\x00\x01\x00\x08\x08", "udpgw_bad_size"),            # IPv4 without its port
    (b"\x0a\x00\x08\x01\x00" + b"\x00" * 7, "udpgw_bad_size"),      # IPv6 flag, 4-byte address
])
def test_bad_messages_are_remote_errors_and_stay_errors(raw, reason):
    parser = UdpgwParser()
    parser.receive_data(raw)
    with pytest.raises(RemoteProtocolError) as info:
        parser.events()
    assert info.value.reason == reason
    parser.receive_data(encode_keepalive())
    with pytest.raises(RemoteProtocolError):
        parser.next_event()


def test_largest_payload_round_trips_and_one_more_byte_is_refused():
    payload = bytes(range(256)) * (udpgw.MAX_PAYLOAD // 256)
    (event,) = parse_all(encode_packet(1, bytes(16), 9, payload))
    assert event.payload == payload and event.ipv6
    with pytest.raises(LocalProtocolError):
        encode_packet(1, bytes(16), 9, payload + b"x")


@pytest.mark.parametrize("kwargs", [
    dict(conn_id=70000), dict(port=-1), dict(address=b"\x01\x02\x03"), dict(flags=FLAG_IPV6),
    dict(flags=udpgw.FLAG_KEEPALIVE),
])
def test_encoder_refuses_what_it_should_never_send(kwargs):
    args = dict(conn_id=1, address=bytes(4), port=53, payload=b"", flags=0) | kwargs
    with pytest.raises(LocalProtocolError):
        encode_packet(**args)


def test_address_bytes():
    assert udpgw.address_bytes("8.8.8.8") == b"\x08\x08\x08\x08"
    assert len(udpgw.address_bytes("::1")) == 16
    with pytest.raises(LocalProtocolError):
        udpgw.address_bytes("example.com")


packets = st.builds(
    lambda conn_id, v6, port, payload, flags: (conn_id, bytes(16) if v6 else bytes(4), port, payload, flags),
    st.integers(0, 0xFFFF), st.booleans(), st.integers(0, 0xFFFF), st.binary(max_size=600),
    st.sampled_from([0, FLAG_DNS, FLAG_REBIND, FLAG_DNS | FLAG_REBIND]))


@given(st.lists(packets, max_size=8), st.integers(1, 50))
def test_round_trip_in_any_chunking(items, chunk):
    stream = b"".join(encode_packet(*item) for item in items)
    parser = UdpgwParser()
    found = []
    for i in range(0, len(stream), chunk):
        parser.receive_data(stream[i:i + chunk])
        found.extend(parser.events())
    assert [(e.conn_id, e.address, e.port, e.payload, e.flags & ~FLAG_IPV6) for e in found] == items


@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_remote_errors(data):
    parser = UdpgwParser()
    parser.receive_data(data)
    try:
        for event in parser.events():
            assert isinstance(event, (PacketReceived, KeepaliveReceived))
    except RemoteProtocolError:
        pass
