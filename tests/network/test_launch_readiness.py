"""A launched machine is ready when its SSH port says SSH, not when something accepts a
connection (a middlebox or captive proxy accepts too)."""

from __future__ import annotations

import socket
import threading
from types import SimpleNamespace

import pytest

from onehop.network.launch import wait_for_ssh
from onehop.network.providers import ProviderError


def listener(greeting: bytes | None):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            if greeting:
                conn.sendall(greeting)
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    return sock


@pytest.mark.parametrize("greeting,ready", [(b"SSH-2.0-OpenSSH_9.2\r\n", True),
                                            (b"HTTP/1.1 200 OK\r\n\r\n", False), (None, False)])
def test_ready_only_when_the_port_speaks_ssh(greeting, ready):
    sock = listener(greeting)
    machine = SimpleNamespace(id="i-1", public_ip="127.0.0.1", ssh_port=sock.getsockname()[1],
                              ssh_host_key="ssh-ed25519 AAAA")
    try:
        if ready:
            assert wait_for_ssh(machine, timeout=5, interval=0.1).ssh_port == machine.ssh_port
        else:
            with pytest.raises(ProviderError, match="did not answer on SSH"):
                wait_for_ssh(machine, timeout=0.5, interval=0.1)
    finally:
        sock.close()
