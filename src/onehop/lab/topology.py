"""Where the lab's client, censor and servers live, and how traffic gets to the censor.

Two topologies with one interface, so that both produce the same observations:

* ``RelayTopology`` (any user): servers on 127.66.2.N, the middlebox listening on
  127.66.1.1. The client's socket opener registers each dial's real destination under
  its source port and connects to the middlebox, which relays to the destination.
* ``NetnsTopology`` (root, ``netns.py``): client, censor and server namespaces joined by
  veth pairs; the censor namespace routes, and iptables REDIRECTs the client's TCP into
  the middlebox, which reads ``SO_ORIGINAL_DST``.

The client is pointed at the censor through ``Controller(open_socket=...)``, not by
rewriting server entries, so that entries the client learns later (discovery, remote
server lists) go through the censor as well.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import socket
from dataclasses import dataclass
from collections.abc import Iterator

from ..errors import OnehopError, TunnelError
from .flows import Endpoint, FlowTracker
from .middlebox import Middlebox, Route


class LabError(OnehopError):
    """The lab could not build or run its topology."""


@dataclass(frozen=True)
class CaptureSpec:
    """Where to run tcpdump to see the client's packets before the censor touches them."""

    netns: str | None
    interface: str
    bpf_filter: str


class Topology(abc.ABC):
    mode = ""
    client_ip = ""

    def __init__(self) -> None:
        self.middlebox: Middlebox | None = None

    async def __aenter__(self) -> Topology:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def server_ip(self, number: int) -> str:
        """The address of server ``number`` (1-based), configured on first use."""

    def server_context(self) -> contextlib.AbstractContextManager:
        """Sockets created inside belong to the servers' network."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def client_socket(self) -> socket.socket:
        """An unconnected TCP socket in the client's network, bound to an ephemeral port."""

    @abc.abstractmethod
    def censor_socket(self) -> socket.socket:
        """An unconnected TCP socket in the censor's network (upstream legs, probes)."""

    @abc.abstractmethod
    def first_hop(self, destination: Endpoint) -> tuple[str, int]:
        """Where the client's socket connects to reach ``destination``."""

    @abc.abstractmethod
    def capture_spec(self, server_ports: Iterator[int] | list[int]) -> CaptureSpec: ...

    def opener(self, tracker: FlowTracker, timeout: float):
        """A ``Controller(open_socket=...)`` that sends every dial through ``tracker``'s censor."""
        async def open_socket(host: str, port: int) -> socket.socket:
            assert self.middlebox is not None
            loop = asyncio.get_running_loop()
            destination = Endpoint(host, port)
            sock = self.client_socket()
            sock.setblocking(False)
            self.middlebox.expect(sock.getsockname()[1], Route(tracker, destination))
            try:
                await asyncio.wait_for(loop.sock_connect(sock, self.first_hop(destination)), timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except (TimeoutError, OSError) as exc:
                sock.close()
                reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else str(exc)
                raise TunnelError("dial", f"cannot connect to {host}:{port}: {reason}") from None
            except BaseException:
                sock.close()
                raise
        return open_socket


RELAY_LISTEN_IP = "127.66.1.1"
RELAY_CLIENT_IP = "127.66.0.1"
RELAY_SERVER_NET = "127.66.2."


class RelayTopology(Topology):
    mode = "relay"
    client_ip = RELAY_CLIENT_IP

    def __init__(self) -> None:
        super().__init__()
        self.listen_port = 0

    async def start(self) -> None:
        listening = socket.socket()
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((RELAY_LISTEN_IP, 0))
        listening.listen(512)
        listening.setblocking(False)
        self.listen_port = listening.getsockname()[1]
        self.middlebox = Middlebox(self.censor_socket)
        await self.middlebox.start(listening)

    async def close(self) -> None:
        if self.middlebox is not None:
            await self.middlebox.close()

    def server_ip(self, number: int) -> str:
        if not 1 <= number <= 250:
            raise LabError(f"server number {number} out of range")
        return f"{RELAY_SERVER_NET}{number}"

    def client_socket(self) -> socket.socket:
        sock = socket.socket()
        sock.bind((RELAY_CLIENT_IP, 0))
        return sock

    def censor_socket(self) -> socket.socket:
        return socket.socket()

    def first_hop(self, destination: Endpoint) -> tuple[str, int]:
        return RELAY_LISTEN_IP, self.listen_port

    def capture_spec(self, server_ports) -> CaptureSpec:
        return CaptureSpec(None, "lo", f"tcp port {self.listen_port}")
