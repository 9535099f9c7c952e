"""net/bulkreads.py: larger reads on tunnel sockets, and read buffers kept in the heap."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from onehop.core.ossh import ClientObfuscator
from onehop.net.bulkreads import BULK_READ_SIZE, keep_read_buffers_in_heap, read_in_bulk
from onehop.net.ossh import ObfuscatedWire


class Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.done = asyncio.Event()
        self.total = 0
        self.expected = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.sizes.append(len(data))
        self.total += len(data)
        if self.total >= self.expected:
            self.done.set()


async def _largest_read(tune: bool, nbytes: int = 8 << 20) -> int:
    """Fill a paused receiver's large socket buffer, then let it read: its largest read."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future = loop.create_future()
    receiver = Collect()
    receiver.expected = nbytes

    def factory():
        accepted.set_result(None)
        return receiver

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    await accepted
    if tune:
        read_in_bulk(receiver.transport)
    receiver.transport.pause_reading()
    transport.write(b"x" * nbytes)
    await asyncio.sleep(0.3)  # the kernel queues what its buffers take
    receiver.transport.resume_reading()
    await asyncio.wait_for(receiver.done.wait(), 20)
    transport.close()
    server.close()
    return max(receiver.sizes)


async def test_a_tuned_transport_reads_more_than_asyncios_default_at_once():
    tuned = await _largest_read(True)
    assert tuned > 256 * 1024  # asyncio's default max_size
    assert tuned <= BULK_READ_SIZE


async def test_an_untuned_transport_keeps_asyncios_default():
    assert await _largest_read(False) <= 256 * 1024


async def test_the_obfuscated_wire_reads_in_bulk():
    """(The client's wire; the server's accepted connections are the same class.)"""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    wire = ObfuscatedWire(ClientObfuscator("k" * 32, seed=b"s" * 16, padding_prng_seed=b"p" * 32))
    transport, _ = await loop.create_connection(lambda: wire, "127.0.0.1", port)
    assert transport.max_size == BULK_READ_SIZE
    transport.close()
    server.close()


def test_a_transport_without_chunked_reads_is_left_alone():
    class Other(asyncio.Transport):
        pass

    other = Other()
    read_in_bulk(other)
    assert not hasattr(other, "max_size")


_HEAP_PROBE = """
import ctypes, json, sys
sys.path[:0] = {path!r}
if {tune!r}:
    from onehop.net.bulkreads import keep_read_buffers_in_heap
    assert keep_read_buffers_in_heap()

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2().hblkhd
buffer = bytearray(1 << 20)  # a read buffer's size
during = libc.mallinfo2().hblkhd
print(json.dumps({{"mmapped": during - before}}))
"""


@pytest.mark.parametrize("tune", [False, True])
def test_read_sized_buffers_come_from_the_heap_once_tuned(tune):
    """In a fresh process glibc maps a 1 MiB buffer on its own (and unmaps it when freed);
    once tuned, it comes from the heap (fresh processes: the thresholds are process-wide)."""
    probe = _HEAP_PROBE.format(path=sys.path, tune=tune)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    mmapped = json.loads(out.stdout)["mmapped"]
    if tune:
        assert mmapped == 0
    else:
        assert mmapped >= 1 << 20


def test_tuning_the_heap_twice_is_harmless():
    assert keep_read_buffers_in_heap() == keep_read_buffers_in_heap()
