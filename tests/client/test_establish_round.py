"""``EstablishmentRound`` with a fake dial function: who wins, what is cancelled or closed,
what a failure records, and how the affinity head start and stalled dials behave. No
network: a "tunnel" is a fake whose ``client.close()`` is recorded."""

from __future__ import annotations

import asyncio
import random

from onehop.client import notices as N
from onehop.client.establish import EstablishmentRound
from onehop.client.notices import Notices
from onehop.errors import TunnelError

from tests.helpers.builders import make_entry

A, B, C, D = (make_entry(f"192.0.2.{n}") for n in range(1, 5))
SSH_ONLY = make_entry("192.0.2.9", capabilities=("SSH",), ossh_port=None)


class FakeClient:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeTunnel:
    def __init__(self, entry, protocol: str) -> None:
        self.entry, self.protocol, self.client = entry, protocol, FakeClient()


class FakeDialer:
    """``dial(entry, protocol, number)``: each entry's behaviour is a coroutine function
    of (entry, protocol); by default the dial waits until the test releases it."""

    def __init__(self, behaviours: dict | None = None) -> None:
        self.behaviours = behaviours or {}
        self.started: list[tuple[str, str, int]] = []
        self.cancelled: list[str] = []
        self.tunnels: list[FakeTunnel] = []
        self.release = asyncio.Event()

    async def __call__(self, entry, protocol: str, number: int):
        self.started.append((entry.ip_address, protocol, number))
        try:
            behaviour = self.behaviours.get(entry.ip_address, self.wait_then_succeed)
            return await behaviour(entry, protocol)
        except asyncio.CancelledError:
            self.cancelled.append(entry.ip_address)
            raise

    def tunnel(self, entry, protocol: str) -> FakeTunnel:
        tunnel = FakeTunnel(entry, protocol)
        self.tunnels.append(tunnel)
        return tunnel

    async def succeed(self, entry, protocol: str) -> FakeTunnel:
        return self.tunnel(entry, protocol)

    async def wait_then_succeed(self, entry, protocol: str) -> FakeTunnel:
        await self.release.wait()
        return self.tunnel(entry, protocol)

    async def hang(self, entry, protocol: str):
        await asyncio.Future()

    async def refuse(self, entry, protocol: str):
        raise TunnelError("connect", "connection refused")


def make_round(dial, notices=None, **options) -> EstablishmentRound:
    settings = dict(workers=4, protocols=("OSSH", "SSH"), affinity_grace=0.0, rng=random.Random(7),
                    stall_release=30.0)
    settings.update(options)
    return EstablishmentRound(dial, notices or Notices(None), **settings)


async def test_the_first_complete_tunnel_wins_and_the_other_dials_are_cancelled():
    dial = FakeDialer()
    dial.behaviours = {"192.0.2.2": dial.succeed}
    result = await make_round(dial).run(None, [A, B, C], work_time=30)
    assert result.tunnel is not None and result.tunnel.entry == B
    started = {ip for ip, _, _ in dial.started}
    assert "192.0.2.1" in started
    assert sorted(dial.cancelled) == sorted(started - {"192.0.2.2"})  # every other dial, A at least
    assert not result.tunnel.client.closed
    assert result.attempted == len(started) and result.failures == []


async def test_a_tunnel_completing_after_the_winner_is_closed_at_once():
    dial = FakeDialer()  # both wait on the same event: they complete in the same turn
    round_ = make_round(dial)
    running = asyncio.create_task(round_.run(None, [A, B], work_time=30))
    while len(dial.started) < 2:
        await asyncio.sleep(0)
    dial.release.set()
    result = await running
    assert len(dial.tunnels) == 2
    winner, loser = (dial.tunnels if dial.tunnels[0] is result.tunnel else dial.tunnels[::-1])
    assert result.tunnel is winner and not winner.client.closed
    assert loser.client.closed  # never two tunnels


async def test_failures_are_recorded_reported_and_end_the_round_when_all_failed():
    dial = FakeDialer()
    dial.behaviours = {"192.0.2.1": dial.refuse, "192.0.2.2": dial.refuse}
    seen = []
    notices = Notices(None)
    round_ = make_round(dial, notices, on_failure=lambda entry, protocol, exc: seen.append((entry, type(exc))))
    result = await round_.run(None, [A, B], work_time=30)  # returns without waiting the 30 s
    assert result.tunnel is None and result.attempted == 2
    assert {(d, e) for d, _, e in result.failures} == {(A.diagnostic_id, "connect: connection refused"),
                                                       (B.diagnostic_id, "connect: connection refused")}
    assert {entry for entry, _ in seen} == {A, B} and {kind for _, kind in seen} == {TunnelError}
    failed = [n["data"] for n in notices.recent if n["data"].get("message") == "server connection failed"]
    assert {n["diagnosticID"] for n in failed} == {A.diagnostic_id, B.diagnostic_id}
    connecting = [n for n in notices.recent if n["noticeType"] == N.CONNECTING_SERVER]
    assert [n["data"]["candidateNumber"] for n in connecting] == [0, 1]


async def test_an_unexpected_error_is_an_internal_error_failure_not_a_crash():
    async def broken(entry, protocol):
        raise KeyError("bug")

    dial = FakeDialer({"192.0.2.1": broken})
    result = await make_round(dial).run(None, [A], work_time=30)
    assert result.tunnel is None
    assert result.failures == [(A.diagnostic_id, result.failures[0][1], "internal error: KeyError: 'bug'")]


async def test_entries_without_an_allowed_protocol_are_not_dialled():
    dial = FakeDialer()
    dial.behaviours = {"192.0.2.1": dial.succeed}
    result = await make_round(dial, protocols=("OSSH",)).run(None, [SSH_ONLY, A], work_time=30)
    assert result.tunnel.entry == A and result.attempted == 1
    assert [ip for ip, _, _ in dial.started] == ["192.0.2.1"]
    assert dial.started[0][1] == "OSSH"


async def test_the_affinity_server_gets_its_head_start():
    dial = FakeDialer()
    dial.behaviours = {"192.0.2.1": dial.succeed, "192.0.2.2": dial.succeed}
    result = await make_round(dial, affinity_grace=30.0).run(A, [B], work_time=60)
    assert result.tunnel.entry == A
    assert [ip for ip, _, _ in dial.started] == ["192.0.2.1"]  # B was never needed


async def test_a_failed_affinity_server_does_not_hold_the_others_back():
    dial = FakeDialer()
    dial.behaviours = {"192.0.2.1": dial.refuse, "192.0.2.2": dial.succeed}
    round_ = make_round(dial, affinity_grace=30.0)
    result = await asyncio.wait_for(round_.run(A, [B], work_time=60), timeout=10)
    assert result.tunnel.entry == B and [ip for ip, _, _ in dial.started] == ["192.0.2.1", "192.0.2.2"]


async def test_a_stalled_dial_gives_its_slot_to_the_next_candidate():
    dial = FakeDialer()
    dial.behaviours = {"192.0.2.1": dial.hang, "192.0.2.2": dial.succeed}
    round_ = make_round(dial, workers=1, stall_release=0.01)
    result = await asyncio.wait_for(round_.run(None, [A, B], work_time=60), timeout=10)
    assert result.tunnel.entry == B
    assert dial.cancelled == ["192.0.2.1"]  # the stalled dial ends with the round


async def test_at_most_max_dials_are_open_at_once():
    dial = FakeDialer()
    dial.behaviours = {ip: dial.hang for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3")}
    dial.behaviours["192.0.2.4"] = dial.succeed
    round_ = make_round(dial, workers=1, stall_release=0.0, max_dials=3)
    result = await round_.run(None, [A, B, C, D], work_time=0.5)
    assert result.tunnel is None  # D waited for a dial to end, and none did before work_time
    assert [ip for ip, _, _ in dial.started] == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    assert sorted(dial.cancelled) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
