"""Does a deployed server answer? Checked from the operator's machine, as a client would.

1. the port accepts TCP connections (waiting up to ``timeout`` for the server to start);
2. OSSH only: a silent probe: a connection that sends nothing gets nothing back (an OSSH
   server never speaks first; anything else on the port would give itself away);
3. a full handshake with the server's signed entry (``onehop.client.dialer.dial``):
   OSSH when the server has it, else SSH; the SSH host key is the one in the entry.

The check's tunnel reports client platform ``onehop_deploy_check`` so ``stats report``
leaves it out of the connection counts.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
from dataclasses import dataclass

from ...client.config import ClientConfig
from ...client.dialer import dial
from ...core.api.protocols import TunnelProtocol as P
from ...core.serverentry import ServerEntry, decode_server_entry, supported_protocols
from ...errors import OnehopError
from ...net.dial import socket_opener
from ..stats.report import DEPLOY_CHECK_PLATFORM

SILENCE = 1.0


@dataclass(frozen=True)
class CheckResult:
    server_id: str
    ok: bool
    detail: str
    milliseconds: int = 0


async def _wait_for_port(host: str, port: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 3)
            writer.close()
            return
        except (TimeoutError, OSError) as exc:
            if loop.time() > deadline:
                raise OnehopError(f"nothing accepts connections on {host}:{port} after {timeout:g}s ({exc})") from None
            await asyncio.sleep(0.25)


async def _silent_probe(host: str, port: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        data = await asyncio.wait_for(reader.read(100), SILENCE)
    except TimeoutError:
        return  # silent, as it must be
    finally:
        writer.close()
    if data:
        raise OnehopError(f"the OSSH port {port} spoke first ({data[:20]!r}): not an OSSH server")


async def _handshake(entry: ServerEntry, protocol: str, timeout: float) -> None:
    with tempfile.TemporaryDirectory(prefix="onehop-check-") as data_dir:
        config = ClientConfig(data_dir=data_dir, client_platform=DEPLOY_CHECK_PLATFORM,
                              tunnel_connect_timeout=timeout, protocols=(protocol,))
        tunnel = await dial(entry, protocol, config, os.urandom(16).hex(), socket_opener(None, timeout))
        tunnel.client.close()


async def check_server(server_id: str, encoded_entry: str, timeout: float = 60.0) -> CheckResult:
    """Never raises: the result says what failed."""
    try:
        entry = decode_server_entry(encoded_entry.strip())
        protocol = P.OSSH if P.OSSH in supported_protocols(entry) else P.SSH
        port = entry.ssh_obfuscated_port if protocol is P.OSSH else entry.ssh_port
        if not port:
            return CheckResult(server_id, False, f"the server entry has no {protocol} port")
        started = time.monotonic()
        await _wait_for_port(entry.ip_address, port, timeout)
        if protocol is P.OSSH:
            await _silent_probe(entry.ip_address, port)
        await asyncio.wait_for(_handshake(entry, protocol, min(timeout, 30.0)), timeout)
    except (TimeoutError, OnehopError, OSError, socket.gaierror) as exc:
        return CheckResult(server_id, False, f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc))
    elapsed = int((time.monotonic() - started) * 1000)
    return CheckResult(server_id, True, f"{protocol} handshake completed on {entry.ip_address}:{port}", elapsed)
