"""The active prober's decisions on scripted flows and scripted reactions (pure)."""

from __future__ import annotations

import random

import pytest

from onehop.lab.flows import Action, Endpoint, FlowTracker
from onehop.lab.prober import (NR1_LENGTHS, ActiveProber, Reaction, changed, imc2020_probes, judge)

from .helpers import SSH_CLIENT_BANNER, SSH_SERVER_BANNER, C, S, make_flow, ossh_first_flight

SILENT = Reaction(0, "fin", 1.5)


def seen(prober: ActiveProber, script, number: int = 1, server=("10.66.2.1", 443), at: float = 0.0):
    flow = make_flow(number, server)
    tracker = FlowTracker(prober)
    tracker.open(flow, at)
    verdicts = [tracker.data(flow, d, data, at + 0.01 * i) for i, (d, data) in enumerate(script)]
    return flow, tracker, verdicts


def test_the_imc2020_probe_set():
    first = bytes(range(100))
    probes = {p.kind: p.payload for p in imc2020_probes(first, first + b"more", random.Random(0))}
    assert probes["R1"] == first and probes["R1-flight"] == first + b"more"
    assert probes["R2"] == changed(first, (0,)) and probes["R2"][1:] == first[1:] and probes["R2"][0] != 0
    assert [i for i in range(100) if probes["R3"][i] != first[i]] == [0, 1, 2, 3, 4, 5, 6, 7, 62, 63]
    assert [i for i in range(100) if probes["R4"][i] != first[i]] == [16]
    assert [i for i in range(100) if probes["R5"][i] != first[i]] == [6, 16]
    assert sorted(len(p) for k, p in probes.items() if k.startswith("NR1")) == sorted(NR1_LENGTHS)
    assert len(probes["NR2-221"]) == 221 and probes["empty"] == b""
    assert probes["http-get"].startswith(b"GET ") and probes["tls-client-hello"][:3] == b"\x16\x03\x01"
    assert "R1-flight" not in {p.kind for p in imc2020_probes(first, first, random.Random(0))}
    assert changed(b"ab", (0, 16)) == bytes([ord("a") ^ 0xFF]) + b"b"  # short packets: what exists


def test_probing_starts_after_the_delay_and_covers_each_server_once():
    prober = ActiveProber(delay=0.3)
    flight = ossh_first_flight(False)
    seen(prober, [(C, flight[0]), (C, flight[1])], number=1)
    seen(prober, [(C, b"again")], number=2)  # same server: not probed twice
    assert prober.next_due() == pytest.approx(0.3)
    assert prober.due(0.2) == [] and prober.pending
    tasks = prober.due(0.31)
    assert {t.target for t in tasks} == {Endpoint("10.66.2.1", 443)}
    kinds = [t.probe.kind for t in tasks]
    assert kinds[:6] == ["R1", "R2", "R3", "R4", "R5", "R1-flight"] and len(kinds) == 6 + 21 + 4
    assert prober.due(1.0) == [] and prober.next_due() is None


def run_probes(prober: ActiveProber, react) -> None:
    for task in prober.due(10.0):
        prober.record(task, react(task.probe))


def test_a_silent_server_is_not_confirmed():
    prober = ActiveProber()
    flow, tracker, _ = seen(prober, [(C, b"".join(ossh_first_flight(True)))])
    run_probes(prober, lambda probe: Reaction(0, "fin", 1.5 + len(probe.payload) * 1e-5))
    assert not prober.pending and prober.confirmed == {}
    judgement = prober.targets[flow.server].judgement
    assert not judgement.confirmed and "uniform" in judgement.reason
    assert tracker.data(flow, C, b"later", 11).action is Action.PASS


def test_a_server_that_answers_is_confirmed_and_blocked_by_ip():
    prober = ActiveProber()
    flow, tracker, _ = seen(prober, [(S, SSH_SERVER_BANNER), (C, SSH_CLIENT_BANNER)])
    run_probes(prober, lambda probe: Reaction(len(SSH_SERVER_BANNER), "fin", 0.01))
    assert "answered probe R1" in prober.confirmed["10.66.2.1"]
    assert tracker.data(flow, S, b"x", 11).action is Action.DROP            # the open flow dies
    other_port = make_flow(9, ("10.66.2.1", 22))
    assert FlowTracker(prober).open(other_port, 12).action is Action.DROP    # and the whole address


def test_endpoint_scope_blocks_only_the_port():
    prober = ActiveProber(scope="endpoint")
    seen(prober, [(C, SSH_CLIENT_BANNER)])
    run_probes(prober, lambda probe: Reaction(21, "timeout", 3.0))
    assert FlowTracker(prober).open(make_flow(9, ("10.66.2.1", 22)), 12).action is Action.PASS
    assert FlowTracker(prober).open(make_flow(10, ("10.66.2.1", 443)), 12).action is Action.DROP


def test_replays_answered_are_confirmed():
    """A server without replay protection answers R1 (a valid preamble) and nothing else."""
    prober = ActiveProber()
    seen(prober, [(C, b"".join(ossh_first_flight(False)))])
    run_probes(prober, lambda p: Reaction(300, "timeout", 3.0) if p.kind in ("R1", "R1-flight") else SILENT)
    assert "answered probe R1" in prober.confirmed["10.66.2.1"]


@pytest.mark.parametrize("react, reason", [
    (lambda p: Reaction(0, "rst", 0.01) if len(p.payload) < 24 else SILENT, "differ by probe"),
    (lambda p: Reaction(0, "fin", 0.05 if p.kind == "empty" else 1.5), "close time depends"),
])
def test_non_uniform_reactions_are_confirmed(react, reason):
    prober = ActiveProber()
    seen(prober, [(C, b"\x01" * 50)])
    run_probes(prober, react)
    assert reason in prober.confirmed["10.66.2.1"]


def test_a_closed_port_and_a_blackhole_are_not_confirmed():
    assert not judge({"a": Reaction(0, "refused", 0.001), "b": Reaction(0, "refused", 0.002)}, 1.0).confirmed
    assert not judge({"a": Reaction(0, "timeout", 3.0), "b": Reaction(0, "timeout", 3.0)}, 1.0).confirmed
    with pytest.raises(ValueError):
        Reaction(0, "closed", 1.0)
