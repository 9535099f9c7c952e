"""An asyncio Transport that runs the sans-IO OSSH core over a real TCP transport.

The SSH library (asyncssh) sees an ordinary transport/protocol pair. Below it, the
``_Wire`` protocol feeds received bytes to the obfuscator and writes what it produces.
Once both directions have passed the first NEWKEYS the obfuscator is the identity and
bytes flow straight through, so bulk data pays only for SSH's own cipher. From then on
the SSH packets written in one event-loop turn go to the socket in one write (a 256 KiB
read from a destination becomes four to eight SSH packets: one send() instead of each).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..core.ossh import DataReceived, EOFReceived, PreambleReceived
from ..core.ossh.stream import ObfuscatedStream
from ..core.sansio import drain
from ..errors import ProtocolError
from .bulkreads import read_in_bulk
from .ownedbuffer import OwnedBuffer

log = logging.getLogger(__name__)


class ObfuscatedTransport(asyncio.Transport):
    """The transport handed to the SSH library (upstream side of the obfuscator)."""

    def __init__(self, wire: asyncio.Transport, obfuscator: ObfuscatedStream,
                 split_delay: float = 0.0) -> None:
        super().__init__()
        self._wire = wire
        self._obfuscator = obfuscator
        self._protocol: asyncio.Protocol | None = None
        self._split_delay = split_delay
        self._held: list[bytes] | None = None  # writes queued behind a prefix split delay
        self._pending: list[bytes] | None = None  # passthrough writes of this loop turn
        self._closing = False
        self._eof_after_held = False

    # -- asyncio.BaseTransport ------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[return-value]

    def get_extra_info(self, name: str, default=None):
        return self._wire.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._closing or self._wire.is_closing()

    def close(self) -> None:
        self._closing = True
        self._flush()
        if self._held is not None:
            return  # close after the held writes go out (see _release_held)
        self._wire.close()

    def abort(self) -> None:
        self._closing = True
        self._pending = None
        self._wire.abort()

    # -- asyncio.ReadTransport ------------------------------------------------------

    def pause_reading(self) -> None:
        self._wire.pause_reading()

    def resume_reading(self) -> None:
        self._wire.resume_reading()

    def is_reading(self) -> bool:
        return self._wire.is_reading()

    @property
    def max_size(self) -> int | None:
        """The socket transport's read size, if it has one (see net/bulkreads.py)."""
        return getattr(self._wire, "max_size", None)

    @max_size.setter
    def max_size(self, size: int) -> None:
        if hasattr(self._wire, "max_size"):
            self._wire.max_size = size

    # -- asyncio.WriteTransport -----------------------------------------------------

    def write(self, data) -> None:
        obfuscator = self._obfuscator
        if obfuscator.write_passthrough and self._held is None:
            if type(data) is not bytes and type(data) is not OwnedBuffer:
                data = bytes(data)  # only bytes nobody changes may wait for the flush
            if self._pending is None:
                self._pending = [data]
                asyncio.get_running_loop().call_soon(self._flush)
            else:
                self._pending.append(data)
            return
        obfuscator.send(bytes(data))
        writes = obfuscator.writes_to_send()
        if not writes:
            return
        if self._held is not None:
            self._held.extend(writes)
        elif self._split_delay > 0 and len(writes) > 1 and getattr(obfuscator, "prefix_spec_name", None):
            self._wire.write(writes[0])
            self._held = writes[1:]
            asyncio.get_running_loop().call_later(self._split_delay, self._release_held)
            self._split_delay = 0.0
        else:
            for chunk in writes:
                self._wire.write(chunk)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._wire.is_closing():
            self._wire.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _release_held(self) -> None:
        held, self._held = self._held or [], None
        if self._wire.is_closing():
            return
        for chunk in held:
            self._wire.write(chunk)
        if self._eof_after_held:
            self._wire.write_eof()
        if self._closing:
            self._wire.close()

    def writelines(self, list_of_data) -> None:
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        self._flush()
        if self._held is not None:
            self._eof_after_held = True  # after the held writes (see _release_held)
            return
        self._wire.write_eof()

    def can_write_eof(self) -> bool:
        return self._wire.can_write_eof()

    def get_write_buffer_size(self) -> int:
        pending = sum(map(len, self._pending)) if self._pending else 0
        return self._wire.get_write_buffer_size() + pending

    def get_write_buffer_limits(self):
        return self._wire.get_write_buffer_limits()

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self._wire.set_write_buffer_limits(high, low)


class ObfuscatedWire(asyncio.Protocol):
    """Protocol on the real socket: feeds the obfuscator, forwards to the SSH protocol.

    ``on_preamble`` is called (server role) when a valid preamble arrived and must
    return the SSH protocol; ``on_error`` is called with the ProtocolError when the
    peer's bytes are invalid (the server goes silent, the client aborts).
    """

    def __init__(self, obfuscator: ObfuscatedStream, *,
                 upstream: asyncio.Protocol | None = None,
                 on_preamble: Callable[[PreambleReceived, ObfuscatedTransport], asyncio.Protocol] | None = None,
                 on_error: Callable[[ProtocolError], None] | None = None,
                 on_event: Callable[[object], None] | None = None,
                 split_delay: float = 0.0) -> None:
        self._obfuscator = obfuscator
        self._upstream = upstream
        self._on_preamble = on_preamble
        self._on_error = on_error
        self._on_event = on_event
        self._split_delay = split_delay
        self.transport: asyncio.Transport | None = None
        self.upstream_transport: ObfuscatedTransport | None = None
        self.failed = False
        self.bytes_received = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        read_in_bulk(transport)
        self.upstream_transport = ObfuscatedTransport(transport, self._obfuscator, self._split_delay)
        if self._upstream is not None:
            self.upstream_transport.set_protocol(self._upstream)
            self._upstream.connection_made(self.upstream_transport)

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        if self.failed:
            return  # probe-silent: read and discard
        upstream = self._upstream
        if upstream is not None and self._obfuscator.read_passthrough:
            upstream.data_received(data)
            return
        self._obfuscator.receive_data(data)
        self._drain_events()

    def eof_received(self):
        if self.failed or self._upstream is None:
            return None  # close our side too
        self._obfuscator.receive_eof()
        self._drain_events()
        return True  # the SSH layer decides when to close

    def _drain_events(self) -> None:
        try:
            for event in drain(self._obfuscator):
                self._dispatch(event)
        except ProtocolError as exc:
            self.failed = True
            if self._on_error is not None:
                self._on_error(exc)
            elif self.transport is not None:
                self.transport.abort()  # client role: a broken server stream is fatal

    def _dispatch(self, event) -> None:
        if isinstance(event, DataReceived):
            if self._upstream is not None:
                self._upstream.data_received(event.data)
        elif isinstance(event, PreambleReceived):
            assert self._on_preamble is not None and self.upstream_transport is not None
            self._upstream = self._on_preamble(event, self.upstream_transport)
            self.upstream_transport.set_protocol(self._upstream)
            self._upstream.connection_made(self.upstream_transport)
        elif isinstance(event, EOFReceived):
            if self._upstream is not None:
                keep_open = self._upstream.eof_received()
                if not keep_open and self.transport is not None:
                    self.transport.close()
        elif self._on_event is not None:
            self._on_event(event)

    def pause_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.pause_writing()

    def resume_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.resume_writing()

    def connection_lost(self, exc) -> None:
        if self._upstream is not None:
            self._upstream.connection_lost(exc)
