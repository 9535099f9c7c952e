"""Load generator for server tests and ``bench/server_load.py``: many SSH tunnels at once.

Run as a separate process (so its CPU is not the server's)::

    python -m tests.server.loadgen onehop --entry FILE --tunnels 1000 [--api-handshake] [--protocol SSH]
        [--churn-seconds 20 --echo 127.0.0.1:PORT] [--concurrency 64]
    python -m tests.server.loadgen ssh --host H --port P --user U --key FILE --tunnels 1000

``onehop`` dials OSSH with ``onehop.tunnel.client.open_tunnel`` (optionally followed by
the API handshake, which forwards need); ``ssh`` dials a plain SSH server with a key.
It prints JSON lines on stdout: ``established`` (count, seconds, failures), ``churn``
(forwards opened, bytes echoed, failures) when asked, then ``holding``; it then waits for
a line (or EOF) on stdin, prints ``alive`` (how many tunnels are still up) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import resource
import sys
import time

import asyncssh
from asyncssh.public_key import decode_ssh_public_key

from onehop.core import api
from onehop.core.api import SSHPasswordPayload
from onehop.core.serverentry import decode_server_entry
from onehop.net.dial import connect_socket
from onehop.tunnel.algorithms import COMPRESSION_ALGS, ENCRYPTION_ALGS, KEX_ALGS, MAC_ALGS
from onehop.tunnel.client import DialTarget, ObfuscationParams, open_tunnel

HANDSHAKE = {"propagation_channel_id": "0000000000000000", "sponsor_id": "0000000000000000",
             "client_version": "1", "client_platform": "Linux_loadgen", "relay_protocol": "OSSH"}


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def onehop_dialer(entry_file: str, api_handshake: bool, protocol: str = "OSSH"):
    with open(entry_file, encoding="ascii") as f:
        entry = decode_server_entry(f.read().strip())
    host_key = decode_ssh_public_key(base64.b64decode(entry.ssh_host_key))
    params = api.encode_request_params(dict(HANDSHAKE, relay_protocol=protocol), packed=True)

    async def dial():
        password = api.encode_ssh_password(SSHPasswordPayload(os.urandom(16).hex(), entry.ssh_password, ()))
        obfuscation, port = None, entry.ssh_port
        if protocol == "OSSH":
            obfuscation = ObfuscationParams(entry.ssh_obfuscated_key, os.urandom(16), os.urandom(32))
            port = entry.ssh_obfuscated_port
        target = DialTarget(entry.ip_address, port, entry.ssh_username, password, host_key, "OpenSSH_8.9",
                            obfuscation)
        tunnel = await open_tunnel(target, lambda h, p: connect_socket(h, p, timeout=60),
                                   keepalive_interval=3600, timeout=120)
        if api_handshake:
            await tunnel.api_request(api.REQUEST_HANDSHAKE, params, timeout=120)
        return tunnel.conn
    return dial


def ssh_dialer(host: str, port: int, user: str, key_file: str):
    key = asyncssh.read_private_key(key_file)

    async def dial():
        return await asyncssh.connect(
            host, port, username=user, client_keys=[key], known_hosts=None, config=None,
            encryption_algs=list(ENCRYPTION_ALGS), mac_algs=list(MAC_ALGS), kex_algs=list(KEX_ALGS),
            compression_algs=list(COMPRESSION_ALGS), preferred_auth="publickey", agent_path=None,
            keepalive_interval=0, login_timeout=120, connect_timeout=60)
    return dial


async def establish(dial, count: int, concurrency: int) -> tuple[list, int, float]:
    gate = asyncio.Semaphore(concurrency)
    conns, failures = [], 0

    async def one() -> None:
        nonlocal failures
        async with gate:
            try:
                conns.append(await dial())
            except Exception as exc:  # a tool: count every failure, show the first few
                failures += 1
                if failures <= 3:
                    print(f"dial failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    return conns, failures, time.monotonic() - started


async def churn(conns: list, echo: tuple[str, int], seconds: float, concurrency: int) -> dict:
    """Open, use and close forwards on random tunnels for ``seconds``."""
    stats = {"forwards": 0, "bytes": 0, "failures": 0}
    deadline = time.monotonic() + seconds
    rng = random.Random(7)

    async def worker() -> None:
        while time.monotonic() < deadline:
            conn = rng.choice(conns)
            payload = os.urandom(rng.randint(1, 16384))
            try:
                reader, writer = await asyncio.wait_for(conn.open_connection(*echo), 30)
                writer.write(payload)
                echoed = await asyncio.wait_for(reader.readexactly(len(payload)), 30)
                writer.close()
                if echoed != payload:
                    raise ValueError("echo mismatch")
                stats["forwards"] += 1
                stats["bytes"] += len(payload)
            except (TimeoutError, OSError, asyncssh.Error, asyncio.IncompleteReadError, ValueError):
                stats["failures"] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return stats


async def main_async(args) -> None:
    raise_fd_limit()
    if args.mode == "onehop":
        dial = onehop_dialer(args.entry, args.api_handshake, args.protocol)
    else:
        dial = ssh_dialer(args.host, args.port, args.user, args.key)
    conns, failures, seconds = await establish(dial, args.tunnels, args.concurrency)
    emit("established", count=len(conns), failures=failures, seconds=round(seconds, 3),
         per_second=round(len(conns) / seconds, 2) if seconds else 0)
    if args.churn_seconds and conns:
        host, port = args.echo.rsplit(":", 1)
        emit("churn", **await churn(conns, (host, int(port)), args.churn_seconds, args.churn_concurrency))
    emit("holding")
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    emit("alive", alive=sum(not c.is_closed() for c in conns))
    for conn in conns:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("onehop", "ssh"))
    parser.add_argument("--entry", help="server-entry.dat of the onehop server")
    parser.add_argument("--api-handshake", action="store_true")
    parser.add_argument("--protocol", choices=("OSSH", "SSH"), default="OSSH")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--user")
    parser.add_argument("--key")
    parser.add_argument("--tunnels", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--churn-seconds", type=float, default=0.0)
    parser.add_argument("--churn-concurrency", type=int, default=32)
    parser.add_argument("--echo", default="127.0.0.1:7")
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
