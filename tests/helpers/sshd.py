"""A private OpenSSH server on loopback, for the deploy and SSH ingest tests and for the
benchmarks that measure onehop beside sshd.

Debian's sshd (``/usr/sbin/sshd -D -e -f CONFIG``) with its own directory, config, port,
host key and an authorized client key: key logins only (root too). ``prepare_sshd``
writes all that and checks the config; ``private_sshd`` (tests) also runs it and skips
the test where it cannot; the benchmarks start the prepared argv as their own child.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence

from .net import free_port, port_accepts

SSHD = "/usr/sbin/sshd"
INSTALL = "apt-get update && apt-get install -y openssh-server openssh-client"

_CONFIG = """\
{listen}Port {port}
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized}
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
AllowTcpForwarding yes
Subsystem sftp internal-sftp
{extra}Compression no
UseDNS no
LogLevel ERROR
"""


class SshdUnavailable(Exception):
    """sshd or ssh-keygen is missing, or sshd rejects its config."""


@dataclass(frozen=True)
class Sshd:
    port: int
    host_key: str          # "ssh-ed25519 AAAA...", as the hosts table pins it
    client_key: str        # path of the private key that may log in
    other_host_key: str    # a key that is not this server's
    argv: tuple[str, ...]  # runs it in the foreground, logging to stderr


def sshd_missing() -> str | None:
    """Why no private sshd can run here, or None."""
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        return f"OpenSSH server not installed ({INSTALL})"
    return None


def _keygen(path: Path, key_args: Sequence[str] = ("-t", "ed25519")) -> str:
    subprocess.run(["ssh-keygen", "-q", *key_args, "-N", "", "-C", "onehop-test", "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)
    return " ".join(path.with_suffix(path.suffix + ".pub").read_text().split()[:2])


def prepare_sshd(directory: Path, addresses: Sequence[str] = ("127.0.0.1",),
                 host_key_args: Sequence[str] = ("-t", "ed25519"), extra_config: str = "") -> Sshd:
    """Keys, authorized_keys and a checked sshd_config in ``directory``, on a free port of
    ``addresses`` (the first is the one to wait for); ``extra_config``: more lines."""
    reason = sshd_missing()
    if reason:
        raise SshdUnavailable(reason)
    directory.mkdir(parents=True, exist_ok=True)
    host_key = _keygen(directory / "host_key", host_key_args)
    other = _keygen(directory / "other_ed25519")
    _keygen(directory / "client_ed25519")
    shutil.copyfile(directory / "client_ed25519.pub", directory / "authorized_keys")
    port = free_port(addresses[0])
    config = directory / "sshd_config"
    config.write_text(_CONFIG.format(
        listen="".join(f"ListenAddress {a}\n" for a in addresses), port=port,
        host_key=directory / "host_key", pid_file=directory / "sshd.pid",
        authorized=directory / "authorized_keys", extra=extra_config))
    with contextlib.suppress(PermissionError):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        raise SshdUnavailable(f"sshd rejected its config {config}: {check.stderr.strip()}")
    return Sshd(port, host_key, str(directory / "client_ed25519"), other, (SSHD, "-D", "-e", "-f", str(config)))


@contextlib.contextmanager
def private_sshd(directory: Path, addresses: tuple[str, ...] = ("127.0.0.1",)):
    """For tests: a running private sshd that root may log in to with ``client_key``; the
    test is skipped where sshd is missing or we are not root."""
    import pytest  # here, not at the top: the benchmarks import this module without pytest
    if reason := sshd_missing():
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("the deploy tests log in as root over a private sshd: run as root")
    sshd = prepare_sshd(directory, addresses)
    log_path = directory / "sshd.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(sshd.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 15
            while not port_accepts(addresses[0], sshd.port):
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "sshd did not start listening"
                time.sleep(0.05)
            yield sshd
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
