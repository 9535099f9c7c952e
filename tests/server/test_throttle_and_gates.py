"""Token buckets (rate after an allowance, debt instead of buffering), the pause bookkeeping
that keeps throttling and flow control apart, the dialing gate and idle timers."""

from __future__ import annotations

import asyncio

import pytest
from asyncssh.misc import ChannelOpenError

from onehop.server.idle import IdleTimer
from onehop.server.portforwards import DialGate
from onehop.core.ossh import ClientObfuscator
from onehop.net.bulkreads import BULK_READ_SIZE, THROTTLED_READ_SIZE, read_in_chunks_of
from onehop.net.ossh import ObfuscatedWire
from onehop.server.throttle import BURST_SECONDS, PausableReader, TokenBucket
from tests.helpers.waiting import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_unlimited_bucket_never_pauses_but_counts():
    bucket = TokenBucket()
    assert bucket.consume(10**9) == 0 and bucket.total == 10**9


def test_allowance_then_rate():
    clock = Clock()
    bucket = TokenBucket(rate=1000, unthrottled=5000, clock=clock)
    assert bucket.consume(4000) == 0                          # within the allowance
    burst = 1000 * BURST_SECONDS                              # the bucket starts full
    delay = bucket.consume(2000)                              # 1000 bytes over the allowance
    assert delay == pytest.approx((1000 - burst) / 1000)
    clock.now += delay
    assert bucket.consume(100) == pytest.approx(0.1)          # debt repaid, each byte costs 1 ms


def test_average_rate_holds_whatever_the_chunking():
    clock = Clock()
    bucket = TokenBucket(rate=50_000, clock=clock)
    sent = 0
    for chunk in [32768, 1, 65536, 4096] * 20:
        clock.now += bucket.consume(chunk)  # the reader sleeps as told
        sent += chunk
    assert sent / (clock.now - 100.0) == pytest.approx(50_000, rel=0.05)


def test_reconfigure_keeps_the_allowance_counted_from_the_start():
    bucket = TokenBucket(rate=0, unthrottled=100, clock=Clock())
    bucket.consume(80)
    bucket.configure(rate=10, unthrottled=100)
    assert bucket.consume(20) == 0 and bucket.consume(10) > 0
    assert bucket.allowance_exhausted


class FakeTransport:
    def __init__(self) -> None:
        self.reading = True
        self.closing = False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing


async def test_throttle_pause_ends_but_a_flow_control_pause_stays():
    transport, reader = FakeTransport(), PausableReader()
    reader.attach(transport)
    reader.throttle(0.05)
    assert not transport.reading
    reader.flow_pause()
    await asyncio.sleep(0.1)
    assert not transport.reading  # throttling is over, flow control is not
    reader.flow_resume()
    assert transport.reading
    reader.flow_pause()
    reader.throttle(0.02)
    reader.flow_resume()
    assert not transport.reading  # still throttled
    await asyncio.sleep(0.06)
    assert transport.reading
    reader.throttle(10)
    reader.close()  # cancels the timer; the transport is no longer touched
    assert not transport.reading


async def test_a_throttled_reader_reads_small_chunks_through_the_obfuscation_layer_too():
    """A throttled transport's reads shrink to THROTTLED_READ_SIZE (the burst a limit lets
    through); the OSSH transport passes the size on to its socket's transport."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    wire = ObfuscatedWire(ClientObfuscator("k" * 32, seed=b"s" * 16, padding_prng_seed=b"p" * 32))
    socket_transport, _ = await loop.create_connection(lambda: wire, "127.0.0.1", port)
    assert wire.upstream_transport is not None
    reader = PausableReader()
    reader.attach(wire.upstream_transport)
    reader.throttle(0)  # not in debt: nothing changes
    assert socket_transport.max_size == BULK_READ_SIZE
    reader.throttle(0.01)
    assert socket_transport.max_size == THROTTLED_READ_SIZE
    assert wire.upstream_transport.max_size == THROTTLED_READ_SIZE
    reader.close()
    socket_transport.close()
    server.close()


async def test_read_small_takes_effect_before_any_pause():
    """A rate-limited client's socket is read in small bursts from the start: the first
    read past the allowance must not be a 1 MiB one that a limit charges only afterwards."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    socket_transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    read_in_chunks_of(socket_transport, BULK_READ_SIZE)
    reader = PausableReader()
    reader.attach(socket_transport)
    reader.read_small()
    assert socket_transport.max_size == THROTTLED_READ_SIZE and socket_transport.is_reading()
    reader.close()
    socket_transport.close()
    server.close()


async def test_dial_gate_queues_in_order_and_rejects_when_full():
    gate = DialGate()
    await gate.acquire(2, 2, None)
    await gate.acquire(2, 2, None)
    order = []

    async def waiter(name):
        await gate.acquire(2, 2, 5)
        order.append(name)

    tasks = [asyncio.create_task(waiter(n)) for n in ("a", "b")]
    await asyncio.sleep(0)
    with pytest.raises(ChannelOpenError):
        await gate.acquire(2, 2, None)  # two dialing, two queued: full
    gate.release()
    gate.release()
    await asyncio.gather(*tasks)
    assert order == ["a", "b"] and gate.active == 2
    with pytest.raises(ChannelOpenError, match="timed out"):
        await gate.acquire(2, 2, 0.01)
    gate.release()
    gate.release()
    assert gate.active == 0
    await gate.acquire(0, 0, None)  # 0 = no limit
    assert gate.active == 1


async def test_idle_timer_fires_after_the_last_touch():
    fired = []
    timeout = [0.05]
    timer = IdleTimer(lambda: timeout[0], lambda: fired.append(1))
    timer.start()
    for _ in range(4):
        await asyncio.sleep(0.02)
        timer.touch()
    assert not fired
    await wait_until(lambda: fired, 2, "the idle timer to fire")
    assert fired == [1]
    timeout[0] = 0
    other = IdleTimer(lambda: timeout[0], lambda: fired.append(2))
    other.start()
    await asyncio.sleep(0.05)
    other.cancel()
    assert fired == [1]  # 0 = no idle limit
