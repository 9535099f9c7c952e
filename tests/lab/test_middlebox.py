"""The middlebox on real TCP flows, in both topologies; the prober's I/O; cleanup."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time

import pytest

from onehop.lab.blocking import IPBlocklist, Throttle
from onehop.lab.dpi import SSHBannerDPI
from onehop.lab.flows import Action, Direction, Endpoint, Flow, FlowTracker, NoCensor
from onehop.lab.netns import NetnsTopology, remove_stale_namespaces
from onehop.lab.prober import ActiveProber
from onehop.lab.probing import ProberDriver, send_probe
from onehop.lab.session import make_topology

from tests.helpers.net import echo

from .conftest import banner, require_netns, serve, silent

pytestmark = pytest.mark.e2e


def server_sockets(topology):
    def factory() -> socket.socket:
        with topology.server_context():
            return socket.socket()
    return factory


async def connect(topology, tracker, ip, port):
    sock = await topology.opener(tracker, 3.0)(ip, port)
    return await asyncio.open_connection(sock=sock)


async def test_pass_relays_both_ways(mode):
    async with make_topology(mode) as topology:
        ip = topology.server_ip(1)
        server, port = await serve(server_sockets(topology), ip, echo)
        tracker = FlowTracker(NoCensor())
        reader, writer = await connect(topology, tracker, ip, port)
        payload = os.urandom(300_000)
        writer.write(payload)
        got = await asyncio.wait_for(reader.readexactly(len(payload)), 10)
        writer.close()
        server.close()
        assert got == payload
        (flow,) = tracker.flows()
        assert flow.server == Endpoint(ip, port) and flow.client.ip == topology.client_ip
        assert tracker.bytes_seen(flow) == {Direction.FROM_CLIENT: len(payload), Direction.FROM_SERVER: len(payload)}


async def test_drop_is_a_silent_blackhole(mode):
    async with make_topology(mode) as topology:
        ip = topology.server_ip(1)
        server, port = await serve(server_sockets(topology), ip, banner(b"hello\r\n"))
        tracker = FlowTracker(IPBlocklist([ip]))
        reader, writer = await connect(topology, tracker, ip, port)  # the censor accepted...
        writer.write(b"anyone there?")
        with pytest.raises(asyncio.TimeoutError):                    # ...and says nothing, ever
            await asyncio.wait_for(reader.read(100), 0.7)
        writer.close()
        server.close()
        assert [v.action for _, v in tracker.decisions] == [Action.DROP]


async def test_reset_when_dpi_sees_an_ssh_banner(mode):
    async with make_topology(mode) as topology:
        ip = topology.server_ip(1)
        server, port = await serve(server_sockets(topology), ip, banner(b"SSH-2.0-OpenSSH_8.4\r\n"))
        reader, writer = await connect(topology, FlowTracker(SSHBannerDPI()), ip, port)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), 3)
        writer.close()
        server.close()


async def test_throttle_limits_the_rate(mode):
    body = os.urandom(120_000)
    async with make_topology(mode) as topology:
        ip = topology.server_ip(1)
        server, port = await serve(server_sockets(topology), ip, banner(body))
        reader, writer = await connect(topology, FlowTracker(Throttle(after_bytes=20_000, rate=100_000)), ip, port)
        started = time.monotonic()
        got = await asyncio.wait_for(reader.readexactly(len(body)), 10)
        elapsed = time.monotonic() - started
        writer.close()
        server.close()
        assert got == body and 0.7 < elapsed < 3.0


async def test_a_flow_nobody_registered_is_closed():
    async with make_topology("relay") as topology:
        reader, writer = await asyncio.open_connection(*topology.first_hop(Endpoint("127.66.2.1", 1)))
        assert await asyncio.wait_for(reader.read(10), 3) == b""
        writer.close()


async def test_the_prober_tells_a_banner_from_silence_and_a_closed_port(mode):
    async with make_topology(mode) as topology:
        factory = server_sockets(topology)
        quiet, quiet_port = await serve(factory, topology.server_ip(1), silent(0.4))
        talker, talker_port = await serve(factory, topology.server_ip(2), banner(b"SSH-2.0-OpenSSH_8.4\r\n"))
        closed_port = 9  # nothing listens there
        prober = ActiveProber(delay=0.0)
        tracker = FlowTracker(prober)
        targets = [Endpoint(topology.server_ip(1), quiet_port), Endpoint(topology.server_ip(2), talker_port),
                   Endpoint(topology.server_ip(1), closed_port)]
        for number, target in enumerate(targets, 1):
            flow = Flow(number, Endpoint(topology.client_ip, 40000 + number), target)
            tracker.open(flow, time.monotonic())
            tracker.data(flow, Direction.FROM_CLIENT, os.urandom(300), time.monotonic())
        driver = ProberDriver(prober, topology.censor_socket, window=1.2)
        driver.start()
        try:
            assert await driver.settle(15)
        finally:
            await driver.close()
            quiet.close()
            talker.close()
        judged = {t: prober.targets[t].judgement for t in targets}
        assert not judged[targets[0]].confirmed and "silent" in judged[targets[0]].reason
        assert judged[targets[1]].confirmed and "answered" in judged[targets[1]].reason
        assert not judged[targets[2]].confirmed and "closed port" in judged[targets[2]].reason
        assert set(prober.confirmed) == {topology.server_ip(2)}
        reactions = prober.targets[targets[0]].reactions.values()
        assert {r.close for r in reactions} == {"fin"} and all(0.3 < r.seconds < 1.0 for r in reactions)


async def test_send_probe_reports_refused_and_timeout():
    refused = await send_probe(socket.socket, Endpoint("127.0.0.1", 9), b"x", window=1)
    assert refused.close == "refused" and refused.received == 0
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        open_ = await send_probe(socket.socket, Endpoint("127.0.0.1", listener.getsockname()[1]), b"", window=0.3)
    finally:
        listener.close()
    assert open_.close == "timeout" and open_.seconds == pytest.approx(0.3)


def lab_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("onehop-lab-")}


async def test_namespaces_are_removed_on_exit_and_on_failure():
    require_netns()
    before = lab_namespaces()
    topology = NetnsTopology()
    async with topology:
        assert set(topology.names.values()) <= lab_namespaces()
    assert lab_namespaces() == before
    with pytest.raises(RuntimeError):
        async with NetnsTopology():
            raise RuntimeError("a scenario failed")
    assert lab_namespaces() == before


def test_stale_namespaces_of_dead_processes_are_removed():
    require_netns()
    dead = 4_000_000  # above pid_max
    name = f"onehop-lab-{dead}-1cli"
    subprocess.run(["ip", "netns", "add", name], check=True)
    assert name in remove_stale_namespaces() and name not in lab_namespaces()
