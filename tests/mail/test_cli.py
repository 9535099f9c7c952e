"""``onehop mail run`` and ``onehop mail stats`` as processes: option errors, a killed
responder restarted with replies queued, the operator's view."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers.net import free_port
from tests.helpers.waiting import poll_until

from .helpers import (
    ADDRESS,
    Sink,
    campaign_entry,
    request,
    smtp_dialogue,
    write_export,
)

pytestmark = pytest.mark.e2e


def onehop(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onehop.cli", *args], capture_output=True, text=True,
                          timeout=60, check=False, **kwargs)


def start_run(config: Path, port: int, relay_port: int, state: Path, log: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "onehop.cli", "--log-level", "INFO", "mail", "run", "--config", str(config),
            "--listen", f"127.0.0.1:{port}", "--relay", f"127.0.0.1:{relay_port}", "--state-dir", str(state),
            "--relay-backoff-max", "0.3", "--hostname", "responder.test"]
    with open(log, "ab") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mail run exited {proc.returncode}: {log.read_text()}")
        try:
            smtp_dialogue(port, "probe@users.test", ["nobody@example.org"], b"")
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("mail run did not start listening")


def test_option_problems_are_all_listed(tmp_path):
    key = tmp_path / "k.pem"
    key.write_text("nope")
    r = onehop("mail", "run", "--config", str(tmp_path / "missing.json"), "--listen", "nonsense",
               "--relay", "127.0.0.1:0", "--dkim-key", str(key), "--dkim-domain", "example.org",
               "--max-replies-per-day", "0", "--tls-cert", str(key))
    assert r.returncode == 2
    for flag in ("--config", "--listen", "--relay", "--dkim-selector", "--max-replies-per-day", "--tls-key"):
        assert flag in r.stderr, flag
    r = onehop("mail", "run", "--config", str(key), "--listen", "127.0.0.1:1", "--relay", "127.0.0.1:2",
               "--dkim-key", str(key), "--dkim-selector", "s", "--dkim-domain", "example.org", "--require-tls")
    assert r.returncode == 2 and "not an unencrypted PEM private key" in r.stderr
    assert "--require-tls: needs --tls-cert" in r.stderr


def test_a_broken_config_stops_the_start_with_every_problem(tmp_path):
    config = tmp_path / "responder.json"
    config.write_text(json.dumps({"version": 1, "addresses": {"A@x.org": {}, "b@x.org": {"links": "x"}}}))
    r = onehop("mail", "run", "--config", str(config), "--listen", "127.0.0.1:0", "--relay", "127.0.0.1:25",
               "--state-dir", str(tmp_path / "state"))
    assert r.returncode == 2
    for key in ("addresses.A@x.org", "addresses.b@x.org.links", "addresses.b@x.org.campaign_id"):
        assert key in r.stderr


def test_killed_with_replies_queued_then_restarted(tmp_path):
    config = write_export(tmp_path / "export")
    state, log = tmp_path / "state", tmp_path / "responder.log"
    port, sink = free_port(), Sink()
    proc = start_run(config, port, sink.port, state, log)
    try:
        for i in range(3):
            assert smtp_dialogue(port, f"p{i}@users.test", [ADDRESS], request(sender=f"p{i}@users.test")).data == 250
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)  # no goodbye: the outbox is all there is
        proc.wait(10)
        proc = start_run(config, port, sink.port, state, log)
        sink.start()
        # six rows delivered (each marked sent before its log line) is an empty outbox: no more can come
        poll_until(lambda: log.read_text().count("delivered the") == 6, what="six deliveries")
        ids = Counter(m.message["Message-ID"] for m in sink.messages)
        assert len(ids) == 6 and set(ids.values()) == {1}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sink.stop()
    text = log.read_text()
    assert "6 replies queued" in text and "users.test" not in text

    r = onehop("mail", "stats", "--state-dir", str(state), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["totals"]["answered"] == 3 and report["totals"]["delivered"] == 6 and report["queued"] == 0
    assert report["totals"]["rejected"] == {"unknown_recipient": 2}  # the two readiness probes
    (day,) = [d for d in report["days"] if d["address"] == ADDRESS]
    assert (day["answered"], day["delivered"]) == (3, 6)
    r = onehop("mail", "stats", "--state-dir", str(state))
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["DAY", "ADDRESS", "ANSWERED", "DELIVERED", "REJECTED", "FAILED"]
    assert any(ADDRESS in line and " 3 " in line and " 6 " in line for line in lines)
    assert "(unknown)" in r.stdout and "unknown_recipient=2" in r.stdout


def test_stats_without_state(tmp_path):
    r = onehop("mail", "stats", "--state-dir", str(tmp_path / "none"))
    assert r.returncode == 1 and "no responder state" in r.stderr


def test_sighup_reloads_at_once(tmp_path):
    config = write_export(tmp_path / "export", {ADDRESS: campaign_entry()})
    state, log, port = tmp_path / "state", tmp_path / "r.log", free_port()
    proc = start_run(config, port, free_port(), state, log)
    try:
        doc = json.loads(config.read_text())
        doc["addresses"]["new@example.org"] = doc["addresses"][ADDRESS]
        config.write_text(json.dumps(doc))
        os.kill(proc.pid, signal.SIGHUP)
        poll_until(lambda: "reloaded" in log.read_text())
        assert smtp_dialogue(port, "p@users.test", ["new@example.org"], request()).rcpts == [250]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def test_dkim_record(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "k.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    r = onehop("mail", "dkim-record", "--dkim-key", str(path), "--dkim-selector", "mail", "--dkim-domain",
               "Example.org")
    assert r.returncode == 0
    assert r.stdout.startswith('mail._domainkey.example.org. IN TXT ( "v=DKIM1; k=rsa; p=MII')
    strings = re.findall(r'"([^"]*)"', r.stdout)
    assert len(strings) == 2 and all(len(s) <= 255 for s in strings)


def test_a_busy_listen_port_is_a_clear_error(tmp_path):
    import socket
    config = write_export(tmp_path / "export")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = onehop("mail", "run", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--relay",
                   "127.0.0.1:25", "--state-dir", str(tmp_path / "state"))
    assert r.returncode == 2 and "--listen: cannot listen on 127.0.0.1" in r.stderr
    assert "Traceback" not in r.stderr


def _run_plain(config: Path, port: int, relay_port: int, state: Path, *extra: str) -> subprocess.Popen:
    """`onehop mail run` as an operator types it: no --log-level."""
    return subprocess.Popen([sys.executable, "-m", "onehop.cli", "mail", "run", "--config", str(config),
                             "--listen", f"127.0.0.1:{port}", "--relay", f"127.0.0.1:{relay_port}",
                             "--state-dir", str(state), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_prints_a_start_line_and_events_but_no_requester(tmp_path):
    """Issue 16: `mail run` printed nothing at all, so an operator could not tell it was up."""
    config = write_export(tmp_path / "export")
    port, sink = free_port(), Sink()
    sink.start()
    proc = _run_plain(config, port, sink.port, tmp_path / "state")
    try:
        start = proc.stderr.readline()
        assert start.startswith(f"onehop mail: answering 2 addresses on 127.0.0.1:{port} ")
        assert f"replies through the relay 127.0.0.1:{sink.port} (0 replies queued)" in start
        assert "SIGTERM stops it" in start
        assert smtp_dialogue(port, "asker@users.test", [ADDRESS], request(sender="asker@users.test")).data == 250
        poll_until(lambda: len(sink.messages) == 2)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        sink.stop()
    assert proc.returncode == 0 and out == ""
    assert "queued" in err and "delivered" in err  # the events
    assert "users.test" not in err and "asker" not in err


def test_run_quiet_prints_nothing(tmp_path):
    config = write_export(tmp_path / "export")
    port, sink = free_port(), Sink()
    sink.start()
    proc = _run_plain(config, port, sink.port, tmp_path / "state", "--quiet")
    try:
        poll_until(lambda: _listening(port))
        assert smtp_dialogue(port, "asker@users.test", [ADDRESS], request(sender="asker@users.test")).data == 250
        poll_until(lambda: len(sink.messages) == 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        sink.stop()
    assert proc.returncode == 0 and out == "" and err == ""


def _listening(port: int) -> bool:
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
