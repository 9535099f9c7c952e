"""What every sans-IO byte-stream endpoint in ``onehop.core`` shares.

``ByteStream`` holds the received-but-unparsed bytes, the queued outgoing bytes and the
EOF flag behind the common vocabulary (``receive_data``, ``receive_eof``,
``data_to_send``); ``NEED_DATA`` and ``PAUSED`` are what ``next_event`` returns when it
has no event.
"""

from __future__ import annotations

import enum

from ..errors import LocalProtocolError


class Pending(enum.Enum):
    """What ``next_event`` returns when it has no event."""

    NEED_DATA = "need data"  # feed more bytes (or EOF)
    PAUSED = "paused"  # waiting for the caller (a reply), or past the handshake


NEED_DATA = Pending.NEED_DATA
PAUSED = Pending.PAUSED


class ByteStream:
    """Receive buffer, send queue and EOF flag."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._outgoing = bytearray()
        self._eof = False

    @property
    def eof_received(self) -> bool:
        return self._eof

    def receive_data(self, data: bytes) -> None:
        if self._eof:
            raise LocalProtocolError("receive_after_eof", "receive_data() called after receive_eof()")
        self._buffer += data

    def receive_eof(self) -> None:
        self._eof = True

    def data_to_send(self) -> bytes:
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out
