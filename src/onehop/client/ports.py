"""What the parts around a running client may ask of its controller.

The controller (``client/controller.py``) is handed to the upgrade and feedback
channels, the terminal view, the web UI's control and the DNS forwarder. Each of them
names here the little it uses, so a test can hand it a small fake and a reader can see
what the controller owes it; :class:`~onehop.client.controller.Controller` satisfies all
of them (``tests/client/test_client_ports.py`` checks that it still does).

* :class:`OutboundClient`: upgrade downloads and feedback uploads (the settings, the
  notices, and the way out: through the tunnel when one is up, else direct or through
  the upstream proxy);
* :class:`FeedbackClient`: feedback also reports the tunnel state and the traffic;
* :class:`StatusSource`: the terminal view (ports, traffic, notices);
* :class:`ControlledClient`: the web UI (connect, disconnect, new settings, whole-device
  mode, and feedback like :class:`FeedbackClient`);
* the DNS forwarder needs a channel only: :class:`onehop.client.udpgw.ChannelOpener`.

Structural types only: nothing here runs, and importing it loads no other client module.
Members the controller owns and a part only reads are read-only properties here, so the
controller's own, more precise types satisfy them (a plain attribute would have to match
exactly).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..core.serverentry import ServerEntry
    from .config import ClientConfig
    from .notices import Notices
    from .wholedevice.service import WholeDeviceState

#: ``opener(host, port)`` -> a connected (reader, writer) pair.
SocketOpener = Callable[[str, int], Awaitable[Any]]


class ByteCounts(Protocol):
    up: int
    down: int


class EntrySource(Protocol):
    def entries(self) -> Sequence[ServerEntry]: ...


class ActiveTunnel(Protocol):
    """The tunnel in use, as far as a view needs it (``client.dialer.EstablishedTunnel``)."""

    protocol: str

    @property
    def entry(self) -> ServerEntry: ...


class OutboundClient(Protocol):
    """Enough to fetch or upload something the way the client itself would."""

    config: ClientConfig
    notices: Notices

    def outbound_opener(self) -> SocketOpener: ...


class FeedbackClient(OutboundClient, Protocol):
    """Feedback from a running client: its server entries (whose addresses are kept, to be
    mapped to server IDs), whether a tunnel is up, and the traffic so far."""

    @property
    def store(self) -> EntrySource: ...

    @property
    def active(self) -> ActiveTunnel | None: ...

    @property
    def byte_counter(self) -> ByteCounts: ...

    @property
    def tunnels_established(self) -> int: ...


class StatusSource(Protocol):
    """What the terminal view draws."""

    config: ClientConfig
    notices: Notices

    @property
    def byte_counter(self) -> ByteCounts: ...

    @property
    def socks_port(self) -> int | None: ...

    @property
    def http_port(self) -> int | None: ...


class WholeDeviceMode(Protocol):
    """Whole-device mode while it is on (``client.wholedevice.WholeDevice``)."""

    @property
    def state(self) -> WholeDeviceState: ...

    async def close(self) -> None: ...


class ControlledClient(StatusSource, FeedbackClient, Protocol):
    """What the web UI reads and changes (it also sends feedback)."""

    #: set while whole-device mode is on (the UI starts and stops it)
    whole_device: WholeDeviceMode | None

    @property
    def wanted(self) -> bool: ...

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def reconfigure(self, config: ClientConfig, *, reconnect: bool = True) -> None: ...
