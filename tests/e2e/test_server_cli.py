"""``onehop server generate|run`` at the edges an operator meets in the first hour."""

from __future__ import annotations

import errno
import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers.net import free_port
from onehop.server.service import listen_problem

pytestmark = pytest.mark.e2e
ONEHOP = [sys.executable, "-m", "onehop.cli"]


def generate(out, *extra):
    return subprocess.run([*ONEHOP, "server", "generate", "--ip", "127.0.0.1", "--ossh-port",
                           str(free_port("127.0.0.1")), "--allow-bogons", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=60)


def test_generate_refuses_to_replace_a_config_without_force(tmp_path):
    assert generate(tmp_path / "srv").returncode == 0
    before = (tmp_path / "srv" / "server.json").read_bytes()
    again = generate(tmp_path / "srv")
    assert again.returncode == 2
    assert "already exists" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.stderr
    assert (tmp_path / "srv" / "server.json").read_bytes() == before
    forced = generate(tmp_path / "srv", "--force")
    assert forced.returncode == 0
    assert (tmp_path / "srv" / "server.json").read_bytes() != before


def test_run_on_a_port_in_use_is_one_line(tmp_path):
    assert generate(tmp_path / "srv").returncode == 0
    port = json.loads((tmp_path / "srv" / "server.json").read_text())["TunnelProtocolPorts"]["OSSH"]
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        done = subprocess.run([*ONEHOP, "server", "run", "--config", str(tmp_path / "srv" / "server.json")],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"cannot listen on OSSH 127.0.0.1:{port}: Address already in use" in done.stderr


def test_privileged_port_problem_says_what_to_do():
    message = listen_problem("0.0.0.0", {"OSSH": 443}, PermissionError(errno.EACCES, "Permission denied"))
    assert message == ("cannot listen on OSSH 0.0.0.0:443: Permission denied "
                       "(ports below 1024 need root or CAP_NET_BIND_SERVICE)")


def _run_server(config, *extra):
    return subprocess.Popen([*ONEHOP, "server", "run", "--config", str(config), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _probe_until_logged(proc, port):
    """Send garbage until the server logs an irregular_tunnel event (the handshake deadline)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"\x00" * 100)
        time.sleep(0.2)


def test_run_prints_a_start_line_and_events_to_stderr(tmp_path):
    assert generate(tmp_path / "srv").returncode == 0
    config_path = tmp_path / "srv" / "server.json"
    config = json.loads(config_path.read_text())
    config["SSHHandshakeTimeoutMilliseconds"] = 300
    config_path.write_text(json.dumps(config))
    port = config["TunnelProtocolPorts"]["OSSH"]
    proc = _run_server(config_path)
    try:
        start = proc.stderr.readline()
        assert start.startswith("onehop server: serving OSSH (with and without prefix) on 127.0.0.1:")
        assert "events to stderr" in start
        _probe_until_logged(proc, port)
        time.sleep(0.6)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [e["event_name"] for e in events] == ["irregular_tunnel"]
    assert "127.0.0.1" not in err.split("\n", 1)[1]  # the prober's address is never printed


def test_quiet_prints_nothing(tmp_path):
    assert generate(tmp_path / "srv").returncode == 0
    config_path = tmp_path / "srv" / "server.json"
    config = json.loads(config_path.read_text())
    config["SSHHandshakeTimeoutMilliseconds"] = 300
    config_path.write_text(json.dumps(config))
    proc = _run_server(config_path, "--quiet")
    try:
        time.sleep(1.5)
        _probe_until_logged(proc, config["TunnelProtocolPorts"]["OSSH"])
        time.sleep(0.6)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and out == "" and err == ""
