"""Larger reads for the sockets that carry tunnelled bytes.

asyncio's socket transports read at most ``max_size`` bytes (256 KiB) per ``recv``. Under
load a tunnel's socket holds more than that at every wakeup, and each read costs a loop
turn, a call through the SSH layer, a window update and a write to the other side: with
four busy tunnels on one server, reads of up to 1 MiB cut the server's CPU per GiB by
about a tenth (bench/server_data_path.py). A read takes only what is there, so idle and
interactive connections are unaffected; the buffer is allocated per read and shrunk to
the bytes received.

``max_size`` is an attribute of asyncio's selector transports, not a documented API (the
obfuscation layer's transport passes it through to its socket's): a transport without it
(an SSL transport) is left as it is. A rate-limited reader reads THROTTLED_READ_SIZE.
"""

from __future__ import annotations

import asyncio
import ctypes

#: The most bytes one ``recv`` takes from a tunnel's socket.
BULK_READ_SIZE = 1 << 20
#: ... and from a rate-limited one: a reader pays for a read after it, so the read size is
#: the burst a limit lets through (and the unit of its pauses).
THROTTLED_READ_SIZE = 64 * 1024


def read_in_bulk(transport: asyncio.BaseTransport) -> None:
    """Let ``transport`` read up to BULK_READ_SIZE bytes at a time, if it reads in chunks."""
    read_in_chunks_of(transport, BULK_READ_SIZE)


def read_in_chunks_of(transport: asyncio.BaseTransport | None, size: int) -> None:
    """Make ``transport`` read at most ``size`` bytes at a time, if it reads in chunks."""
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = size  # type: ignore[union-attr]


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Allocations below this come from the heap, not from a fresh mmap each time.
MMAP_THRESHOLD = 4 * BULK_READ_SIZE
#: Free memory at the top of the heap is returned to the system only beyond this.
TRIM_THRESHOLD = 32 * BULK_READ_SIZE


def keep_read_buffers_in_heap() -> bool:
    """Make glibc reuse heap memory for read buffers (once per process that relays bulk data).

    glibc serves a 1 MiB ``recv`` buffer either with a fresh mmap (every page faulted in
    again on every read) or, once its threshold has adapted, from the top of the heap, and
    then returns that top to the system at every free (two ``brk`` calls per read). Fixed
    thresholds keep such buffers in the heap and the heap's top in place: at most
    TRIM_THRESHOLD bytes stay mapped unused. False where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # macOS: no mallopt; Windows: no CDLL(None)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
