"""FlowTracker and censor composition (pure)."""

from __future__ import annotations

from onehop.lab.blocking import IPBlocklist, Throttle
from onehop.lab.dpi import SSHBannerDPI
from onehop.lab.flows import (PASS, Action, Censor, Chain, DataSeen, FlowClosed, FlowOpened, FlowTracker,
                              NoCensor, Verdict)

from .helpers import SSH_SERVER_BANNER, C, S, make_flow, play


class Recorder(Censor):
    name = "recorder"

    def __init__(self) -> None:
        self.events = []

    def on_open(self, event):
        self.events.append(event)
        return PASS

    def on_data(self, event):
        self.events.append(event)
        return PASS

    def on_close(self, event):
        self.events.append(event)


def test_events_carry_offsets_per_direction_and_flow_totals():
    recorder = Recorder()
    play(recorder, [(C, b"abc"), (S, b"xy"), (C, b"defg"), (S, b"z")])
    opened, *data, closed = recorder.events
    assert isinstance(opened, FlowOpened) and isinstance(closed, FlowClosed)
    assert [(e.direction, e.offset, e.flow_bytes, e.first) for e in data] == [
        (C, 0, 0, True), (S, 0, 3, True), (C, 3, 5, False), (S, 2, 9, False)]
    assert all(isinstance(e, DataSeen) for e in data)


def test_a_blocked_flow_stays_blocked_and_the_censor_is_not_asked_again():
    recorder = Recorder()
    censor = Chain(SSHBannerDPI(), recorder)
    verdicts = play(censor, [(S, SSH_SERVER_BANNER), (C, b"anything"), (S, b"more")])
    assert [v.action for v in verdicts] == [Action.PASS, Action.RESET, Action.RESET, Action.RESET]
    assert verdicts[1].censor == "ssh-dpi" and "SSH banner" in verdicts[1].reason
    assert sum(isinstance(e, DataSeen) for e in recorder.events) == 1  # only the banner


def test_chain_picks_the_most_severe_verdict_and_flattens():
    flow = make_flow()
    chain = Throttle(0, 1000) + IPBlocklist([flow.server.ip]) + NoCensor()
    assert isinstance(chain, Chain) and len(chain.censors) == 3
    tracker = FlowTracker(chain)
    assert tracker.open(flow, 0).action is Action.DROP
    assert [v.censor for _, v in tracker.decisions] == ["ip-blocklist"]


def test_throttle_is_sticky_and_can_turn_into_a_block():
    flow = make_flow()
    blocklist = IPBlocklist()
    tracker = FlowTracker(Throttle(after_bytes=10, rate=5000) + blocklist)
    assert tracker.open(flow, 0) == PASS
    assert tracker.data(flow, C, b"x" * 8, 0.1) == PASS
    throttled = tracker.data(flow, S, b"y" * 8, 0.2)
    assert throttled.action is Action.THROTTLE and throttled.rate == 5000
    blocklist.learn([flow.server.ip])
    assert tracker.data(flow, C, b"z", 0.3).action is Action.DROP
    assert tracker.bytes_seen(flow) == {C: 9, S: 8}


def test_verdict_labels():
    assert Verdict(Action.DROP, "x").by("c").censor == "c"
    assert Verdict(Action.RESET).blocks and not Verdict(Action.THROTTLE).blocks
