"""Scripted flows for the pure censor-model tests."""

from __future__ import annotations

import os

from onehop.core.ossh import ClientObfuscator, PrefixSpec
from onehop.core.ossh.prefix import DEFAULT_CLIENT_PREFIX_SPECS
from onehop.lab.flows import Censor, Direction, Endpoint, Flow, FlowTracker, Verdict

C, S = Direction.FROM_CLIENT, Direction.FROM_SERVER
CLIENT_IP = "10.66.1.1"


def make_flow(number: int = 1, server: tuple[str, int] = ("10.66.2.1", 443),
              client_ip: str = CLIENT_IP) -> Flow:
    return Flow(number, Endpoint(client_ip, 40000 + number), Endpoint(*server))


def play(censor: Censor, script: list[tuple[Direction, bytes]], flow: Flow | None = None,
         tracker: FlowTracker | None = None, at: float = 0.0) -> list[Verdict]:
    """Open a flow, feed it ``script``; the verdict after each step (open first)."""
    flow = flow or make_flow()
    tracker = tracker or FlowTracker(censor)
    verdicts = [tracker.open(flow, at)]
    for i, (direction, data) in enumerate(script):
        verdicts.append(tracker.data(flow, direction, data, at + 0.01 * (i + 1)))
    tracker.close(flow, at + 1)
    return verdicts


def ossh_first_flight(prefix: bool = False, seed: bytes | None = None, keyword: str = "k" * 64) -> list[bytes]:
    """The separate writes an OSSH client makes first (prefix, rest, identification line)."""
    spec = PrefixSpec("http-get", DEFAULT_CLIENT_PREFIX_SPECS["http-get"]) if prefix else None
    client = ClientObfuscator(keyword, seed=seed or os.urandom(16), padding_prng_seed=os.urandom(32),
                              prefix=spec, prefix_seed=os.urandom(32) if prefix else None)
    client.send(b"SSH-2.0-OpenSSH_8.9\r\n")
    return client.writes_to_send()


SSH_CLIENT_BANNER = b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n"
SSH_SERVER_BANNER = b"SSH-2.0-OpenSSH_8.4\r\n"
