"""``onehop feedback receive`` (issue 16): a directory setup's upload endpoint that
``feedback collect --from DIR`` reads; never a client address in what it writes or prints."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys


from tests.helpers.net import free_port
from onehop.feedback.receive import store_upload
from tests.feedback.conftest import sqlite_db
from tests.feedback.test_cli import run, write_config

ONEHOP = [sys.executable, "-m", "onehop.cli"]
CLIENT_IP = "127.0.0.77"  # the uploader's own loopback address: it must appear nowhere


def start_receiver(port: int, directory, *extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([*ONEHOP, "feedback", "receive", "--listen", f"127.0.0.1:{port}", "--to",
                             str(directory), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, proc.stderr.readline()


def put(port: int, path: str, body: bytes) -> int:
    """A PUT from CLIENT_IP (bound), as an uploading client's would arrive."""
    conn_socket = socket.create_connection(("127.0.0.1", port), source_address=(CLIENT_IP, 0))
    request = (f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
               "Connection: close\r\n\r\n").encode() + body
    with conn_socket:
        conn_socket.sendall(request)
        answer = b""
        while chunk := conn_socket.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


async def test_send_receive_collect_and_no_client_address_anywhere(tmp_path, feedback_keys, capsys):
    private, public = feedback_keys
    (tmp_path / "feedback.pem").write_text(private)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = free_port("127.0.0.1")
    proc, start = start_receiver(port, inbox)
    try:
        assert start.startswith(f"onehop feedback receive: accepting uploads (HTTP PUT, up to 8388608 bytes each) "
                                f"on http://127.0.0.1:{port}/ into {inbox};")
        assert f"onehop feedback collect --from {inbox}" in start and "feedback-upload-url" in start
        config = write_config(tmp_path, public, f"http://127.0.0.1:{port}/fb")
        assert await run(["feedback", "send", "--message", "it broke", "--config", config, "--json"]) == 0
        sent = json.loads(capsys.readouterr().out)
        assert put(port, "/fb/0123456789abcdef", b"x" * 100) == 200
        assert put(port, "/fb/0123456789abcdef", b"y" * 100) == 200        # a retry: both kept
        assert put(port, "/fb/../../etc/passwd", b"z") == 200               # a hostile name: a safe one
        assert put(port, "/fb/big", b"z" * (8 * 1024 * 1024 + 1)) == 413
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "4 uploads stored" in err
    names = sorted(os.listdir(inbox))
    assert len(names) == 4 and sent["upload_id"] in names and "0123456789abcdef" in names
    assert all(not n.startswith(".") and "/" not in n and ".." not in n for n in names)
    assert not (tmp_path / "etc").exists()
    for path in tmp_path.rglob("*"):
        if path.is_file() and "data" not in path.parts:
            assert CLIENT_IP.encode() not in path.read_bytes(), path
    assert CLIENT_IP not in start + out + err
    db = sqlite_db(tmp_path)
    assert await run(["feedback", "collect", "--db", db, "--from", str(inbox), "--key",
                      str(tmp_path / "feedback.pem"), "--json"]) == 1  # the three garbage uploads are rejected
    result = json.loads(capsys.readouterr().out)
    assert result["stored"] == [sent["upload_id"]]


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*ONEHOP, "feedback", "receive", "--listen", f"127.0.0.1:{port}", "--to",
                               str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"--listen: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr


def test_a_missing_directory_is_a_clear_error(tmp_path):
    done = subprocess.run([*ONEHOP, "feedback", "receive", "--listen", "127.0.0.1:0", "--to",
                           str(tmp_path / "none")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--to" in done.stderr and "not a directory" in done.stderr


def test_store_upload_is_atomic_and_never_replaces(tmp_path):
    assert store_upload(str(tmp_path), "abc", b"1") == "abc"
    second = store_upload(str(tmp_path), "abc", b"2")
    assert second.startswith("abc-") and (tmp_path / "abc").read_bytes() == b"1"
    assert len(store_upload(str(tmp_path), "a/b", b"3")) == 16
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


async def test_no_upload_url_names_the_fix(tmp_path, feedback_keys, capsys):
    config = tmp_path / "client.json"
    config.write_text(json.dumps({"DataRootDirectory": str(tmp_path / "data")}))
    assert await run(["feedback", "send", "--message", "x", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "onehop network settings set feedback-upload-url" in err and "onehop feedback receive" in err
    assert "build-client" in err
