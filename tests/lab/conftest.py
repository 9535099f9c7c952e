"""Lab fixtures: the topologies this machine can run, small real servers."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from onehop.lab.netns import netns_available

NETNS_UNAVAILABLE = netns_available()
ON_CI = bool(os.environ.get("ONEHOP_CI"))


def require_netns() -> None:
    """Skip without namespaces -- except on CI, which runs as root and must run them."""
    if NETNS_UNAVAILABLE is not None:
        if ON_CI and os.geteuid() == 0:
            pytest.fail(f"CI runs as root but namespaces are unusable: {NETNS_UNAVAILABLE}")
        pytest.skip(f"network namespaces unavailable: {NETNS_UNAVAILABLE}")


@pytest.fixture(params=["relay", "netns"])
def mode(request):
    if request.param == "netns":
        require_netns()
    return request.param


async def serve(sock_factory, ip: str, handler) -> tuple[asyncio.AbstractServer, int]:
    """An asyncio server on ``ip`` whose listening socket comes from ``sock_factory``."""
    sock = sock_factory()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((ip, 0))
    sock.listen(64)
    sock.setblocking(False)
    server = await asyncio.start_server(handler, sock=sock)
    return server, sock.getsockname()[1]


def banner(text: bytes):
    async def handler(reader, writer) -> None:
        writer.write(text)
        try:
            await writer.drain()
            await asyncio.wait_for(reader.read(65536), 0.5)
        except (TimeoutError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
    return handler


def silent(close_after: float):
    async def handler(reader, writer) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + close_after
        try:
            while (left := deadline - loop.time()) > 0:
                if not await asyncio.wait_for(reader.read(65536), left):
                    break
        except (TimeoutError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
    return handler
