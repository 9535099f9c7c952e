"""The onehop command as operators and users run it: real processes, real signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import pytest

from tests.helpers.net import free_port
from tests.conftest import vector_cases
from tests.e2e.proxyclient import http_get_via_socks

pytestmark = pytest.mark.e2e
ONEHOP = [sys.executable, "-m", "onehop.cli"]


def run(*args, **kwargs):
    return subprocess.run([*ONEHOP, *args], capture_output=True, text=True, timeout=120, **kwargs)


async def read_notice(proc, notice_type: str, timeout: float = 30.0) -> dict:
    async def scan():
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError(f"client exited before {notice_type}")
            notice = json.loads(line)
            if notice["noticeType"] == notice_type:
                return notice
    return await asyncio.wait_for(scan(), timeout)


async def test_generate_run_connect_and_stop_with_sigterm(tmp_path, page):
    ip = "127.0.0.60"
    out = tmp_path / "srv"
    generated = run("server", "generate", "--ip", ip, "--ossh-port", str(free_port(ip)),
                    "--ssh-port", str(free_port(ip)), "--allow-bogons", "--out", str(out))
    assert generated.returncode == 0, generated.stderr
    assert oct(os.stat(out / "server.json").st_mode & 0o777) == "0o600"
    server = await asyncio.create_subprocess_exec(*ONEHOP, "server", "run", "--config", str(out / "server.json"))
    client = await asyncio.create_subprocess_exec(
        *ONEHOP, "client", "--target-server-entry", f"@{out / 'server-entry.dat'}", "--socks-port", "0",
        "--http-port", "0", "--data-dir", str(tmp_path / "client"), "--notices", stdout=subprocess.PIPE)
    try:
        socks = (await read_notice(client, "ListeningSocksProxyPort"))["data"]["port"]
        assert (await read_notice(client, "Tunnels"))["data"] == {"count": 1}
        body, port = page
        assert await http_get_via_socks(socks, "127.0.0.1", port) == body
    finally:
        client.send_signal(signal.SIGTERM)
        server.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(client.wait(), 10) == 0
        assert await asyncio.wait_for(server.wait(), 10) == 0


def test_demo_exits_zero_after_fetching_a_page():
    result = run("demo")
    assert result.returncode == 0, result.stderr
    assert "demo OK" in result.stdout and "SHA-256 matches" in result.stdout


def test_a_bad_server_entry_names_its_field(tmp_path):
    entry = bytes.fromhex(vector_cases("server_entry")[0]["encoded"])
    broken = entry.replace(b'"sshObfuscatedPort":4242', b'"sshObfuscatedPort":"x"').hex()
    result = run("client", "--target-server-entry", broken, "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "sshObfuscatedPort" in result.stderr


def test_garbage_server_config_lists_every_problem(tmp_path):
    config = tmp_path / "server.json"
    config.write_text(json.dumps({"ServerIPAddress": "not-an-ip", "TunnelProtocolPorts": {"OSSH": 0},
                                  "AllowBogons": "yes", "Surprise": 1}))
    result = run("server", "run", "--config", str(config))
    assert result.returncode == 2
    for key in ("ServerIPAddress", "TunnelProtocolPorts", "AllowBogons", "Surprise", "SSHPrivateKey"):
        assert key in result.stderr
