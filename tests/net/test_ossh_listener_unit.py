"""``net.listener`` unit tests: one accepted OSSH connection (``ProbeSilentConnection``)
on a fake socket transport, with a fake SSH factory, seed history and key deriver, and
preambles made by the real OSSH client core. Deadlines run on a virtual clock, so the
exact times of the FIN and the close are asserted, not waited for."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import struct

import pytest

from onehop.core.ossh import PreambleReceived
from onehop.core.ossh.cipher import derive_streams
from onehop.core.ossh.constants import MAGIC_VALUE, MAX_PADDING
from onehop.core.sansio import drain
from onehop.errors import OSSHReason, RemoteProtocolError
from onehop.net.acceptgate import HOLD_LINGER, AcceptGate, HeldConnection
from onehop.net.listener import CLOSE_LINGER, OSSHListener, ProbeSilentConnection
from onehop.net.ossh import ObfuscatedTransport
from tests.helpers.virtualtime import run_in_virtual_time
from tests.helpers.waiting import wait_until
from tests.net.adapter_fakes import (CLIENT_LINE, KEXINIT_PAYLOAD, KEYWORD, PEER_IP, SERVER_LINE,
                                     FakeSeedHistory, FakeSSHFactory, FakeWire, GatedKeyDeriver,
                                     first_flight, ossh_client, packet_payloads)

TIMEOUT = 30.0
NOW = 1_750_000_000.0  # the listener's wall clock, as the seed history sees it


class Harness:
    """An OSSHListener with fakes around it; ``accept()`` gives a connection on a FakeWire."""

    def __init__(self, **options) -> None:
        self.factory = options.pop("factory", None) or FakeSSHFactory()
        self.history = FakeSeedHistory()
        self.reports: list[tuple[float, RemoteProtocolError, str]] = []
        self.listener = OSSHListener(KEYWORD, self.factory, history=self.history, handshake_timeout=TIMEOUT,
                                     on_irregular=self._report, clock=lambda: NOW, **options)

    def _report(self, error, peer_ip) -> None:
        self.reports.append((asyncio.get_running_loop().time(), error, peer_ip))

    def reasons(self) -> list[OSSHReason]:
        return [error.reason for _, error, _ in self.reports]

    def accept(self, admission=None, **wire_options) -> tuple[ProbeSilentConnection, FakeWire]:
        conn = ProbeSilentConnection(self.listener, admission)
        wire = FakeWire(**wire_options)
        wire.connect(conn)
        return conn, wire


def short_flight(keyword: str = KEYWORD) -> bytes:
    """A valid first flight with the least padding (well short of the prefix search limit)."""
    return first_flight(ossh_client(keyword, max_padding=32))


def bad_padding_length_preamble() -> bytes:
    """A seed message whose magic value is right and whose padding length is not."""
    seed = os.urandom(16)
    c2s, _ = derive_streams(seed, KEYWORD.encode())
    return seed + c2s.apply(struct.pack(">II", MAGIC_VALUE, MAX_PADDING + 1))


# -- a valid preamble ---------------------------------------------------------------------


@pytest.mark.parametrize("prefix", [False, True], ids=["plain", "prefix"])
@run_in_virtual_time
async def test_a_valid_preamble_gets_the_ssh_protocol_the_plaintext_and_no_deadline(prefix):
    harness = Harness()
    conn, wire = harness.accept()
    client = ossh_client(prefix=prefix)
    flight = first_flight(client)
    wire.feed(flight)
    [(event, transport)] = harness.factory.calls
    assert event == PreambleReceived(client.padding_length, "http-get" if prefix else None)
    assert isinstance(transport, ObfuscatedTransport) and transport.get_extra_info("peername")[0] == PEER_IP
    [ssh] = harness.factory.protocols
    assert ssh.transport is transport and conn.established
    received = bytes(ssh.received)
    assert received.startswith(CLIENT_LINE)
    assert packet_payloads(received[len(CLIENT_LINE):]) == [KEXINIT_PAYLOAD]
    [(seed, now)] = harness.history.asked
    assert now == NOW and seed in flight and (prefix or seed == flight[:16])
    ssh.transport.write(SERVER_LINE)
    if prefix:  # the prefix reply goes out in a write of its own
        assert re.fullmatch(rb"HTTP/1\.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: \d+\r\n\r\n",
                            wire.writes[0])
    client.receive_data(wire.sent)
    assert b"".join(e.data for e in drain(client)) == SERVER_LINE
    await asyncio.sleep(TIMEOUT + CLOSE_LINGER + 1)
    assert wire.actions() == ["write"] * len(wire.writes)  # the SSH layer's login timeout applies now
    assert harness.reports == []


# -- probes: silence, then the same FIN and close whatever was sent ------------------------


def _replayed(harness: Harness) -> bytes:
    flight = short_flight()
    harness.accept()[1].feed(flight)  # the original, an earlier connection
    return flight


PROBES = {
    # name: (bytes, the reason reported, when it is reported)
    "connect-only": (lambda h: b"", OSSHReason.HANDSHAKE_TIMEOUT, TIMEOUT),
    "one-byte": (lambda h: b"\x00", OSSHReason.HANDSHAKE_TIMEOUT, TIMEOUT),
    "100-random": (lambda h: os.urandom(100), OSSHReason.HANDSHAKE_TIMEOUT, TIMEOUT),
    "http-get": (lambda h: b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", OSSHReason.HANDSHAKE_TIMEOUT, TIMEOUT),
    "wrong-keyword": (lambda h: short_flight("not-the-keyword"), OSSHReason.HANDSHAKE_TIMEOUT, TIMEOUT),
    "100k-random": (lambda h: os.urandom(100_000), OSSHReason.NO_PREFIX_TERMINATOR, 0.0),
    "bad-padding-length": (lambda h: bad_padding_length_preamble(), OSSHReason.BAD_PADDING_LENGTH, 0.0),
    "replayed": (_replayed, OSSHReason.DUPLICATE_SEED, 0.0),
}


@pytest.mark.parametrize("name", PROBES)
@run_in_virtual_time
async def test_a_probe_gets_no_byte_then_a_fin_at_the_deadline_and_a_close_after_the_linger(name):
    make_payload, reason, reported_at = PROBES[name]
    harness = Harness()
    payload = make_payload(harness)
    harness.reports.clear()
    conn, wire = harness.accept()
    if payload:
        wire.feed(payload)
    await asyncio.sleep(TIMEOUT + CLOSE_LINGER + 1)
    assert wire.writes == []
    assert wire.log == [(TIMEOUT, "write_eof"), (TIMEOUT + CLOSE_LINGER, "close")]
    assert [(when, error.reason, ip) for when, error, ip in harness.reports] == [(reported_at, reason, PEER_IP)]
    assert isinstance(harness.reports[0][1], RemoteProtocolError)
    assert len(harness.factory.calls) == (1 if name == "replayed" else 0)  # only the original's
    assert conn not in harness.listener.connections  # gone at connection_lost

    # ... exactly as a connection held beyond its source's cap is treated
    assert HOLD_LINGER == CLOSE_LINGER
    held_wire = FakeWire()
    started = asyncio.get_running_loop().time()
    held_wire.connect(HeldConnection(TIMEOUT, lambda: None))
    if payload:
        held_wire.feed(payload)
    await asyncio.sleep(TIMEOUT + CLOSE_LINGER + 1)
    assert [(when - started, what) for when, what in held_wire.log] == wire.log


@pytest.mark.parametrize("sent, reasons", [
    (b"", []),
    (b"\x00" * 23, [OSSHReason.INCOMPLETE_PREAMBLE]),
    (None, [OSSHReason.BAD_PADDING_LENGTH]),  # rejected first: reported once, at the rejection
], ids=["nothing", "half-a-preamble", "rejected"])
@run_in_virtual_time
async def test_a_peer_that_closes_first_is_closed_quietly_at_once(sent, reasons):
    harness = Harness()
    _, wire = harness.accept()
    await asyncio.sleep(5)
    payload = bad_padding_length_preamble() if sent is None else sent
    if payload:
        wire.feed(payload)
    wire.feed_eof()
    assert wire.log == [(5.0, "close")] and wire.writes == []
    assert harness.reasons() == reasons
    await asyncio.sleep(TIMEOUT + CLOSE_LINGER)
    assert wire.log == [(5.0, "close")]  # the deadline died with the connection
    assert harness.listener.connections == set()

    held_wire = FakeWire()  # a connection held beyond its source's cap closes the same way
    started = asyncio.get_running_loop().time()
    held_wire.connect(HeldConnection(TIMEOUT, lambda: None))
    await asyncio.sleep(5)
    if payload:
        held_wire.feed(payload)
    held_wire.feed_eof()
    await asyncio.sleep(TIMEOUT + CLOSE_LINGER)
    assert [(when - started, what) for when, what in held_wire.log] == wire.log


@run_in_virtual_time
async def test_without_half_close_the_deadline_closes_at_once():
    harness = Harness()
    _, wire = harness.accept(can_write_eof=False)
    wire.feed(os.urandom(40))
    await asyncio.sleep(TIMEOUT + CLOSE_LINGER + 1)
    assert wire.log == [(TIMEOUT, "close")] and wire.writes == []
    assert harness.reasons() == [OSSHReason.HANDSHAKE_TIMEOUT]


# -- the irregular report ------------------------------------------------------------------


@run_in_virtual_time
async def test_the_report_names_the_reason_and_the_peer_but_the_log_never_the_address(caplog):
    caplog.set_level(logging.DEBUG)
    harness = Harness()
    _, replayed = harness.accept()
    flight = _replayed(harness)
    replayed.feed(flight)
    harness.accept()[1].feed(bad_padding_length_preamble())
    harness.accept()
    await asyncio.sleep(TIMEOUT + CLOSE_LINGER + 1)
    assert sorted(harness.reasons()) == sorted([OSSHReason.DUPLICATE_SEED, OSSHReason.BAD_PADDING_LENGTH,
                                                OSSHReason.HANDSHAKE_TIMEOUT])
    assert {ip for _, _, ip in harness.reports} == {PEER_IP}
    for reason in harness.reasons():
        assert isinstance(reason, OSSHReason) and reason.value in caplog.text
    assert PEER_IP not in caplog.text


@run_in_virtual_time
async def test_a_connection_without_a_peer_address_is_reported_with_an_empty_one():
    harness = Harness()
    _, wire = harness.accept(peer=None)
    wire.feed(bad_padding_length_preamble())
    assert [(error.reason, ip) for _, error, ip in harness.reports] == [(OSSHReason.BAD_PADDING_LENGTH, "")]


# -- key derivation off the loop -----------------------------------------------------------


@pytest.fixture
def no_derivation_on_the_loop(monkeypatch):
    def refuse(*args):
        raise AssertionError("OSSH keys derived on the event loop")
    monkeypatch.setattr("onehop.core.ossh.server.derive_key", refuse)


@run_in_virtual_time
async def test_keys_are_derived_by_the_deriver_once_and_the_preamble_completes_after(no_derivation_on_the_loop):
    deriver = GatedKeyDeriver()
    harness = Harness(key_deriver=deriver)
    _, wire = harness.accept()
    flight = short_flight()
    wire.feed(flight[:30])
    await deriver.started.wait()
    wire.feed(flight[30:])  # more bytes while the keys derive: no second request
    await asyncio.sleep(1)
    assert deriver.requests == [(flight[:16], KEYWORD.encode())]
    assert harness.factory.calls == [] and harness.history.asked == []
    deriver.release()
    await wait_until(lambda: harness.factory.calls, timeout=5, what="the SSH protocol")
    received = bytes(harness.factory.protocols[0].received)
    assert received.startswith(CLIENT_LINE) and packet_payloads(received[len(CLIENT_LINE):]) == [KEXINIT_PAYLOAD]
    assert harness.history.asked == [(flight[:16], NOW)] and harness.reports == []


@pytest.mark.parametrize("prefix", [False, True], ids=["plain", "prefix"])
@pytest.mark.parametrize("end", ["reset", "fin"])
@run_in_virtual_time
async def test_a_connection_gone_while_keys_derive_still_puts_its_seed_in_the_history(
        no_derivation_on_the_loop, end, prefix):
    # A censor that captures a first flight and then kills the connection (or a client
    # that gives up) must not be able to replay the flight as a fresh one: with the keys
    # derived on the loop the seed would have been recorded on arrival.
    deriver = GatedKeyDeriver()
    gate = AcceptGate(max_pending=8, max_pending_per_source=4)
    harness = Harness(key_deriver=deriver)
    _, wire = harness.accept(admission=gate.admit(PEER_IP))
    flight = first_flight(ossh_client(prefix=prefix))
    wire.feed(flight)
    await deriver.started.wait()
    if end == "reset":
        wire.reset_by_peer()
    else:
        wire.feed_eof()
    await asyncio.sleep(0)
    assert harness.listener.connections == set() and gate.pending == 0  # its place in the cap is free
    deriver.release()
    await wait_until(lambda: harness.history.asked, timeout=5, what="the seed checked")
    assert harness.factory.calls == [] and wire.writes == []  # nothing answered on the dead connection
    _, replay = harness.accept()
    replay.feed(flight)
    await wait_until(lambda: harness.reports and harness.reports[-1][1].reason is OSSHReason.DUPLICATE_SEED,
                     timeout=5, what="the replay rejected")
    assert harness.factory.calls == [] and replay.writes == [] and deriver.cancelled == 0


@run_in_virtual_time
async def test_keys_arriving_for_a_closing_connection_are_dropped(no_derivation_on_the_loop):
    deriver = GatedKeyDeriver()
    harness = Harness(key_deriver=deriver)
    _, wire = harness.accept()
    wire.feed(short_flight())
    await deriver.started.wait()
    deriver.release()
    wire.close()  # closing in the same loop turn: the keys arrive before connection_lost
    await asyncio.sleep(1)
    assert deriver.cancelled == 0 and harness.factory.calls == []
    assert wire.writes == [] and wire.actions() == ["close"]


@run_in_virtual_time
async def test_keys_arriving_after_the_deadline_are_dropped(no_derivation_on_the_loop):
    deriver = GatedKeyDeriver()
    harness = Harness(key_deriver=deriver)
    _, wire = harness.accept()
    wire.feed(short_flight())
    await asyncio.sleep(TIMEOUT + 1)
    deriver.release()
    await asyncio.sleep(CLOSE_LINGER)
    assert harness.factory.calls == [] and wire.writes == []
    assert wire.log == [(TIMEOUT, "write_eof"), (TIMEOUT + CLOSE_LINGER, "close")]
    assert harness.reasons() == [OSSHReason.HANDSHAKE_TIMEOUT]


@run_in_virtual_time
async def test_a_replay_found_once_the_keys_arrive_is_rejected_silently(no_derivation_on_the_loop):
    deriver = GatedKeyDeriver()
    deriver.release()
    harness = Harness(key_deriver=deriver)
    flight = _replayed(harness)
    _, wire = harness.accept()
    wire.feed(flight)
    await wait_until(lambda: harness.reports, timeout=5, what="the irregular report")
    assert harness.reasons() == [OSSHReason.DUPLICATE_SEED] and len(harness.factory.calls) == 1
    await asyncio.sleep(TIMEOUT + CLOSE_LINGER)
    assert wire.writes == [] and wire.actions() == ["write_eof", "close"]


# -- the handshake cap and the listener's bookkeeping --------------------------------------


@pytest.mark.parametrize("ssh_holds_admission", [False, True])
@run_in_virtual_time
async def test_the_admission_is_released_at_the_preamble_unless_the_ssh_protocol_takes_it(ssh_holds_admission):
    gate = AcceptGate(max_pending=8, max_pending_per_source=4)
    harness = Harness(factory=FakeSSHFactory(with_admission_slot=ssh_holds_admission))
    admission = gate.admit(PEER_IP)
    _, wire = harness.accept(admission=admission)
    assert gate.pending == 1
    wire.feed(short_flight())
    if ssh_holds_admission:
        assert harness.factory.protocols[0].admission is admission and gate.pending == 1
    else:
        assert gate.pending == 0
    wire.close()
    await asyncio.sleep(0)
    assert gate.pending == (1 if ssh_holds_admission else 0)  # then it is the SSH layer's to release


@run_in_virtual_time
async def test_a_probe_holds_its_admission_until_the_connection_is_gone():
    gate = AcceptGate(max_pending=8, max_pending_per_source=4)
    harness = Harness()
    _, wire = harness.accept(admission=gate.admit(PEER_IP))
    wire.feed(bad_padding_length_preamble())
    await asyncio.sleep(TIMEOUT + 1)
    assert gate.pending == 1  # FIN sent, still lingering
    await asyncio.sleep(CLOSE_LINGER)
    assert gate.pending == 0


@run_in_virtual_time
async def test_closing_the_listener_closes_every_connection_it_accepted():
    harness = Harness()
    _, established = harness.accept()
    established.feed(short_flight())
    _, waiting = harness.accept()
    assert len(harness.listener.connections) == 2
    harness.listener.close()
    assert established.is_closing() and waiting.is_closing()
    await asyncio.sleep(0)
    assert harness.listener.connections == set()
    assert harness.factory.protocols[0].calls[-1] == "connection_lost"
