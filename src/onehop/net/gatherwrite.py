"""Writing several buffers to a socket transport in one system call, without joining them.

A relay often has several buffers for one socket at once: the payloads of the SSH packets
that one read brought in, each a slice of its decrypted packet. asyncio's socket transport
(Python 3.11) takes one bytes-like object per ``write()``, so the relay either joined them
(one more copy of every byte, on top of the slice that cut each payload out) or wrote each
(a system call each).

When the transport has nothing queued, its ``write()`` starts with one ``send()`` on the
socket; ``GatherWriter.write`` does the same with ``os.writev`` over the buffers where they
lie, and hands back what the socket did not take, for the transport's own ``write()`` to
queue. Nothing is reordered: with bytes queued in the transport, everything goes there.

Only asyncio's own selector socket transport qualifies (a private class, checked exactly):
an SSL or obfuscating transport also exposes its socket, and bytes written past it would
corrupt the stream. Elsewhere (Windows has no ``writev``, uvloop's transports) the caller
joins as before.
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import os
from collections.abc import Sequence
from typing import Any

#: asyncio's own socket transport (a private name: without it every caller just joins)
_PLAIN_SOCKET_TRANSPORT = getattr(asyncio.selector_events, "_SelectorSocketTransport", None)

_writev = getattr(os, "writev", None)

try:
    IOV_MAX = os.sysconf("SC_IOV_MAX")
except (AttributeError, ValueError, OSError):  # pragma: no cover
    IOV_MAX = 16  # POSIX's minimum

Buffers = Sequence[Any]  # bytes-like objects


class GatherWriter:
    """Gathered writes to one plain socket transport (see the module's docstring)."""

    __slots__ = ("_sock", "_transport")

    def __init__(self, transport: asyncio.WriteTransport, sock: Any) -> None:
        self._transport = transport
        self._sock = sock  # asyncio's TransportSocket: fileno() is -1 once it is closed

    @classmethod
    def for_transport(cls, transport: asyncio.BaseTransport) -> GatherWriter | None:
        """A writer for ``transport``, or None when it is not a plain socket transport."""
        if _writev is None or _PLAIN_SOCKET_TRANSPORT is None or type(transport) is not _PLAIN_SOCKET_TRANSPORT:
            return None
        sock = transport.get_extra_info("socket")
        return None if sock is None else cls(transport, sock)  # type: ignore[arg-type]

    def write(self, buffers: Buffers) -> Buffers:
        """Send what the socket takes now; return the rest (empty when all went out),
        which the caller passes to the transport's ``write()``.

        Any error is left to that ``write()`` too: it meets the same error on its own
        ``send()`` and closes the transport its usual way.
        """
        if self._transport.get_write_buffer_size() or len(buffers) > IOV_MAX:
            return buffers
        try:
            sent = _writev(self._sock.fileno(), buffers)  # type: ignore[misc]
        except OSError:  # BlockingIOError included: nothing went out
            return buffers
        return _unsent(buffers, sent)


def _unsent(buffers: Buffers, sent: int) -> Buffers:
    """What remains of ``buffers`` after their first ``sent`` bytes went out."""
    for i, buf in enumerate(buffers):
        size = len(buf) if not isinstance(buf, memoryview) else buf.nbytes
        if sent < size:
            rest = list(buffers[i + 1:])
            if sent:
                rest.insert(0, memoryview(buf)[sent:])
            else:
                rest.insert(0, buf)
            return rest
        sent -= size
    return ()
