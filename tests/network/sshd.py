"""A private OpenSSH server on loopback for the deploy and SSH ingest tests.

Debian's sshd (``/usr/sbin/sshd -D -e -f CONFIG``) with its own config, port, host key
and an authorized test key; root logins with that key only. Skipped when sshd is not
installed (``apt-get install -y openssh-server``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class Sshd:
    port: int
    host_key: str          # "ssh-ed25519 AAAA...", as the hosts table pins it
    client_key: str        # path of the private key that may log in
    other_host_key: str    # a key that is not this server's


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "onehop-test", "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


@contextlib.contextmanager
def private_sshd(directory: Path, addresses: tuple[str, ...] = ("127.0.0.1",)):
    """``addresses``: the loopback addresses it listens on (the first is the one waited for)."""
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server not installed (apt-get install -y openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("the deploy tests log in as root over a private sshd: run as root")
    directory.mkdir(parents=True, exist_ok=True)
    host_key = _keygen(directory / "host_ed25519")
    other = _keygen(directory / "other_ed25519")
    _keygen(directory / "client_ed25519")
    shutil.copyfile(directory / "client_ed25519.pub", directory / "authorized_keys")
    port = _free_port()
    config = directory / "sshd_config"
    listen = "".join(f"ListenAddress {a}\n" for a in addresses)
    config.write_text(f"""\
{listen}Port {port}
HostKey {directory / 'host_ed25519'}
PidFile {directory / 'sshd.pid'}
AuthorizedKeysFile {directory / 'authorized_keys'}
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
Subsystem sftp internal-sftp
UseDNS no
LogLevel ERROR
""")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    log = open(directory / "sshd.log", "wb")
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                               stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert process.poll() is None, (directory / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not start listening"
            time.sleep(0.05)
        yield Sshd(port, host_key, str(directory / "client_ed25519"), other)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
