"""Active probing: an invalid or replayed OSSH connection gets no byte back and the same
close (FIN after the handshake deadline, never RST), whatever and however much was sent."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import pytest

from onehop.core.ossh import ClientObfuscator
from onehop.lab.prober import TLS_CLIENT_HELLO

pytestmark = pytest.mark.e2e

TIMEOUT_MS = 1000

HTTP_GET = b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\n\r\n"


def probe_blocking(host: str, port: int, payload: bytes, read_for: float = 6.0):
    """Send ``payload`` and read until EOF; (bytes received, seconds to EOF, how it closed)."""
    sock = socket.create_connection((host, port), timeout=read_for)
    received = b""
    started = time.monotonic()
    try:
        if payload:
            sock.sendall(payload)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received, time.monotonic() - started, "fin"
            received += chunk
    except ConnectionResetError:
        return received, time.monotonic() - started, "rst"
    except TimeoutError:
        return received, time.monotonic() - started, "open"
    finally:
        sock.close()


async def probe(host, port, payload):
    return await asyncio.to_thread(probe_blocking, host, port, payload)


def valid_first_flight(keyword: str) -> bytes:
    client = ClientObfuscator(keyword, seed=os.urandom(16), padding_prng_seed=os.urandom(32))
    client.send(b"SSH-2.0-OpenSSH_8.9\r\n")
    return client.data_to_send()


PROBES = {
    "connect-only": b"",
    "one-byte": b"\x00",
    "23-random": os.urandom(23),
    "24-random": os.urandom(24),
    "100-random": os.urandom(100),
    "5000-random": os.urandom(5000),
    "200k-random": os.urandom(200_000),
    "http-get": HTTP_GET,
    "tls-client-hello": TLS_CLIENT_HELLO,
    "ssh-banner": b"SSH-2.0-OpenSSH_9.6\r\n",
}


async def test_probes_get_silence_and_a_uniform_fin(network):
    running = await network.add(handshake_timeout_ms=TIMEOUT_MS)
    host, port = running.entry.ip_address, running.entry.ssh_obfuscated_port
    results = dict(zip(PROBES, await asyncio.gather(*(probe(host, port, p) for p in PROBES.values()))))
    for name, (received, seconds, closed) in results.items():
        assert received == b"", f"{name}: server answered {received[:20]!r}"
        assert closed == "fin", f"{name}: closed by {closed}"
        assert 0.9 <= seconds <= 3.0, f"{name}: closed after {seconds:.2f}s"
    durations = [seconds for _, seconds, _ in results.values()]
    assert max(durations) - min(durations) < 1.0


async def test_replayed_preamble_is_silent_while_the_original_was_answered(network, tmp_path):
    running = await network.add(handshake_timeout_ms=TIMEOUT_MS, LogFilename="events.jsonl")
    host, port = running.entry.ip_address, running.entry.ssh_obfuscated_port
    flight = valid_first_flight(running.entry.ssh_obfuscated_key)
    original, _, _ = await probe(host, port, flight)
    assert len(original) > 20  # line padding and the server's identification line
    replay, seconds, closed = await probe(host, port, flight)
    assert replay == b"" and closed == "fin" and 0.9 <= seconds <= 3.0
    log_text = (tmp_path / "events.jsonl").read_text()
    events = [json.loads(line) for line in log_text.splitlines()]
    assert {"event_name": "irregular_tunnel", "tunnel_error": "duplicate_seed"}.items() <= events[-1].items()
    assert "127.0.0" not in log_text  # no client address is ever logged


async def test_wrong_keyword_is_a_probe(network):
    running = await network.add(handshake_timeout_ms=TIMEOUT_MS)
    flight = valid_first_flight("not-the-key")
    received, seconds, closed = await probe(running.entry.ip_address, running.entry.ssh_obfuscated_port, flight)
    assert received == b"" and closed == "fin"
