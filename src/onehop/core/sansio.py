"""The one sans-IO dialect every parser in ``onehop.core`` speaks.

A parser is fed with ``receive_data(bytes)`` (and ``receive_eof()`` where the end of the
stream means something) and asked for events with ``next_event()``, which returns exactly
one of:

* an event, a frozen dataclass named as a fact (``PreambleReceived``, ``PacketReceived``);
* ``NEED_DATA`` (a ``Pending`` member): no event until more bytes, or EOF, arrive;
* ``PAUSED`` (a ``Pending`` member): no event until the caller acts (sends a reply), or the
  parser is past what it parses (the handshake is over, the response is complete).

It never returns ``None``. Call it until it returns a ``Pending`` member
(``for event in drain(parser)``), feed more bytes on ``NEED_DATA``. Bad bytes from the
peer raise ``RemoteProtocolError``, misuse by the caller raises ``LocalProtocolError``,
each with a ``Reason`` from ``onehop.errors``; after a ``RemoteProtocolError`` the stream
is unusable (none of these protocols resynchronises). Outgoing bytes come from
``data_to_send()``.

``ByteStream`` holds the receive buffer, the send queue and the EOF flag behind that
vocabulary for parsers that want them.
"""

from __future__ import annotations

import enum
from typing import Final, Protocol, TypeVar
from collections.abc import Iterator

from ..errors import LocalProtocolError, UsageReason


class Pending(enum.Enum):
    """What ``next_event`` returns when it has no event."""

    NEED_DATA = "need data"  # feed more bytes (or EOF)
    PAUSED = "paused"  # waiting for the caller (a reply), or past what it parses


NEED_DATA: Final = Pending.NEED_DATA
PAUSED: Final = Pending.PAUSED

EventT = TypeVar("EventT", covariant=True)


class EventSource(Protocol[EventT]):
    def next_event(self) -> EventT | Pending: ...


def drain(parser: EventSource[EventT]) -> Iterator[EventT]:
    """The events ``parser`` has now, up to its next ``NEED_DATA`` or ``PAUSED``."""
    while not isinstance(event := parser.next_event(), Pending):
        yield event


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
            raise LocalProtocolError(UsageReason.DATA_AFTER_EOF, "receive_data() called after receive_eof()")
        self._buffer += data

    def receive_eof(self) -> None:
        self._eof = True

    def data_to_send(self) -> bytes:
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out
