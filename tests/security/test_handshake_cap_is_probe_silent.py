"""A connection beyond its source's handshake cap is closed as any failed probe is.

Closing it at once (as first built) let a prober that holds a few connections see a FIN
at 0 s where every other probe gets one at the handshake deadline; the censorship lab's
active prober confirmed OSSH-PREFIX servers that way.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

pytestmark = pytest.mark.e2e
DEADLINE_MS = 800


async def probe(host: str, port: int, payload: bytes) -> tuple[bytes, float]:
    """What a probe gets back, and when the server's FIN came (seconds after connecting)."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    writer.write(payload)
    got = b""
    while chunk := await asyncio.wait_for(reader.read(65536), 10):
        got += chunk
    elapsed = time.monotonic() - started
    writer.close()
    return got, elapsed


async def test_over_cap_connection_gets_the_probe_treatment(network):
    running = await network.add(ssh=False, handshake_timeout_ms=DEADLINE_MS,
                                MaxConcurrentSSHHandshakesPerClient=2)
    host, port = running.entry.ip_address, running.entry.ssh_obfuscated_port
    holders = [await asyncio.open_connection(host, port) for _ in range(2)]  # the cap, held
    await asyncio.sleep(0.1)
    over_cap, in_cap_later = await asyncio.gather(probe(host, port, os.urandom(300)),
                                                  asyncio.sleep(0))
    assert over_cap[0] == b""
    assert over_cap[1] >= DEADLINE_MS / 1000 * 0.9, over_cap  # not at once
    for _, writer in holders:
        writer.close()
    await asyncio.sleep(0.2)
    normal = await probe(host, port, os.urandom(300))
    assert normal[0] == b"" and abs(normal[1] - over_cap[1]) < 0.3, (normal, over_cap)


def test_the_per_source_cap_counts_an_ipv6_host_by_its_64():
    """One IPv6 host holds a whole /64: counted by address, it would have no cap at all."""
    from onehop.net.acceptgate import source_key
    assert source_key("2001:db8:1:2::1") == source_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") != source_key("2001:db8:1:2::1")
    assert source_key("::ffff:192.0.2.7") == source_key("192.0.2.7") == "192.0.2.7"
    assert source_key("fe80::1%eth0") == "fe80::/64"
