"""Load: one ``onehop server run`` process holds 1,000 concurrent tunnels while forwards
churn through them, stays responsive to a new client, and logs every tunnel at the end.

The tunnels come from a separate process (``tests/server/loadgen.py``: OSSH dials and the
API handshake with onehop's tunnel layer), so the server's CPU is its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from onehop.core.serverentry import decode_server_entry
from tests.helpers.net import free_port
from onehop.server.generate import generate_server, write_server_dir
from tests.helpers.waiting import wait_until
from tests.e2e.proxyclient import http_get_via_socks

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TUNNELS = 1000
CHURN_SECONDS = 10.0


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def read_event(proc, name: str, timeout: float) -> dict:
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        if not line:
            raise AssertionError(f"the load generator ended before {name!r}")
        event = json.loads(line)
        if event["event"] == name:
            return event


def accepts(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def count_events(path, name: str) -> int:
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        return sum(f'"event_name":"{name}"' in line for line in f)


@pytest.mark.timeout(900)
async def test_one_server_holds_1000_tunnels_with_forward_churn(tmp_path, echo_server, page, make_client):
    ip = "127.0.0.40"
    generated = generate_server(ip, ossh_port=free_port(ip), allow_bogons=True, log_filename="events.log")
    # the load generator is one source dialing 64 at a time: above the per-source handshake cap
    generated.config["MaxConcurrentSSHHandshakesPerClient"] = 128
    config_path, entry_path = write_server_dir(tmp_path / "server", generated)
    log_path = tmp_path / "server" / "events.log"
    # one process (--workers 1): the one whose memory is measured below
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "onehop.cli", "server", "run", "--config", str(config_path), "--workers", "1",
        stderr=open(tmp_path / "server.stderr", "wb"))
    await wait_until(lambda: accepts(ip, generated.config["TunnelProtocolPorts"]["OSSH"]), 30)
    load = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.server.loadgen", "onehop", "--entry", str(entry_path),
        "--tunnels", str(TUNNELS), "--api-handshake", "--concurrency", "64",
        "--churn-seconds", str(CHURN_SECONDS), "--echo", f"127.0.0.1:{echo_server}",
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        established = await read_event(load, "established", 600)
        assert established["count"] == TUNNELS and established["failures"] == 0, established
        churn = await read_event(load, "churn", 120)
        assert churn["failures"] == 0 and churn["forwards"] >= 200, churn
        await read_event(load, "holding", 60)
        held_rss = rss_kib(server.pid)

        # still responsive with 1,000 tunnels up: a real client comes up and fetches a page
        client = await make_client([decode_server_entry(generated.encoded_entry)])
        body, port = page
        assert await http_get_via_socks(client.socks_port, "127.0.0.1", port) == body

        load.stdin.write(b"report\n")
        await load.stdin.drain()
        alive = await read_event(load, "alive", 60)
        assert alive["alive"] == TUNNELS
        await asyncio.wait_for(load.wait(), 120)
        await wait_until(lambda: count_events(log_path, "server_tunnel") >= TUNNELS, 120)
        assert held_rss < 1024 * 1024  # sanity: well under 1 GiB (bench/server_load.py measures)
    finally:
        for proc in (load, server):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
    assert server.returncode == 0  # a clean stop under load
