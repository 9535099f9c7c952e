"""Management SSH to hosts (asyncssh), always against the host key pinned in the database.

``deploy`` and ``stats ingest --from ssh://...`` connect as the host's management user
(``host add --ssh-user``, default root) on its management port, authenticating with
``--ssh-key`` files or, without them, the operator's usual keys and agent. The server's
host key must equal the pinned one (``host add --ssh-host-key`` or ``host set-key``):
there is no trust on first use, and a mismatch aborts before anything is sent.
asyncssh and OS exceptions become :class:`RemoteError` here, at one boundary.
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncssh

from .errors import RemoteError
from .models import Host

CONNECT_TIMEOUT = 20.0


@dataclass(frozen=True)
class SshTarget:
    """Where and how to reach one host's management SSH."""

    name: str
    address: str
    port: int
    username: str
    host_key: str

    def __str__(self) -> str:
        return f"{self.username}@{self.name} ({self.address}:{self.port})"


def ssh_target(host: Host, *, username: str | None = None, port: int | None = None) -> SshTarget:
    if not host.ssh_host_key:
        raise RemoteError(f"host {host.name} has no pinned SSH host key: pin it first with "
                          f"onehop network host set-key --name {host.name} --ssh-host-key 'ssh-ed25519 AAAA...'")
    return SshTarget(host.name, host.ip_address, port or host.ssh_port, username or host.ssh_username,
                     host.ssh_host_key)


@dataclass(frozen=True)
class RunResult:
    exit_status: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class RemoteHost:
    """An open management connection: commands and (atomic) file transfers."""

    def __init__(self, target: SshTarget, connection: asyncssh.SSHClientConnection) -> None:
        self.target = target
        self._connection = connection
        self._sftp: asyncssh.SFTPClient | None = None

    async def run(self, command: str, *, check: bool = True, timeout: float | None = 600.0,
                  what: str | None = None) -> RunResult:
        """Run ``command`` with the remote user's shell; RemoteError on failure if ``check``."""
        try:
            done = await self._connection.run(command, check=False, encoding=None, timeout=timeout)
        except asyncssh.TimeoutError:
            raise RemoteError(f"{self.target.name}: {what or command!r} did not finish in {timeout:g}s") from None
        except (asyncssh.Error, OSError) as exc:
            raise RemoteError(f"{self.target.name}: cannot run {what or command!r}: {exc}") from None
        stdout, stderr = _as_bytes(done.stdout), _as_bytes(done.stderr)  # bytes: encoding=None above
        result = RunResult(done.exit_status if done.exit_status is not None else -1, stdout,
                           stderr.decode("utf-8", errors="replace"))
        if check and result.exit_status != 0:
            detail = _tail(result.stderr) or _tail(result.text)
            raise RemoteError(f"{self.target.name}: {what or command!r} failed (exit {result.exit_status})"
                              + (f":\n{detail}" if detail else ""))
        return result

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = await self._connection.start_sftp_client()
            except (asyncssh.Error, OSError) as exc:
                raise RemoteError(f"{self.target.name}: no SFTP subsystem: {exc}") from None
        return self._sftp

    async def read_file(self, path: str, offset: int = 0, size: int = -1) -> bytes | None:
        """The bytes of ``path`` from ``offset`` (all, or ``size``); None if it does not exist."""
        sftp = await self._sftp_client()
        try:
            async with sftp.open(path, "rb") as f:
                return _as_bytes(await f.read(size, offset))
        except asyncssh.SFTPNoSuchFile:
            return None
        except (asyncssh.Error, OSError) as exc:
            raise RemoteError(f"{self.target.name}: cannot read {path}: {exc}") from None

    async def write_file(self, path: str, data: bytes, mode: int = 0o644) -> bool:
        """Replace ``path`` atomically (temp file + rename) unless it already holds
        ``data`` with ``mode``; True when written."""
        sftp = await self._sftp_client()
        try:
            try:
                attrs = await sftp.stat(path)
                if attrs.size == len(data) and (attrs.permissions or 0) & 0o7777 == mode \
                        and await self.read_file(path) == data:
                    return False
            except asyncssh.SFTPNoSuchFile:
                pass
            # an unpredictable name, created exclusively: a planted symlink cannot take the data
            tmp = f"{path}.{secrets.token_hex(8)}.onehop-tmp"
            async with sftp.open(tmp, "xb", asyncssh.SFTPAttrs(permissions=mode)) as f:
                await f.write(data)
            await sftp.chmod(tmp, mode)
            await sftp.posix_rename(tmp, path)
        except (asyncssh.Error, OSError) as exc:
            raise RemoteError(f"{self.target.name}: cannot write {path}: {exc}") from None
        return True


def quote(*words: str) -> str:
    return " ".join(shlex.quote(str(w)) for w in words)


def _connect_error(target: SshTarget, exc: BaseException) -> RemoteError:
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return RemoteError(f"{target}: the SSH host key does not match the key pinned in the database "
                           f"({target.host_key.split()[0]}); aborted before sending anything. If the host was "
                           "reinstalled, check the new key out of band and pin it with host set-key")
    if isinstance(exc, asyncssh.PermissionDenied):
        return RemoteError(f"{target}: authentication failed (give the management key with --ssh-key)")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return RemoteError(f"{target}: no SSH answer within {CONNECT_TIMEOUT:g}s")
    if isinstance(exc, OSError):
        return RemoteError(f"{target}: cannot connect: {exc.strerror or exc}")
    return RemoteError(f"{target}: SSH failed: {exc}")


@asynccontextmanager
async def connect(target: SshTarget, client_keys: Sequence[str] | None = None) -> AsyncIterator[RemoteHost]:
    """An open connection to ``target`` that only accepts the pinned host key."""
    try:
        pinned = asyncssh.import_public_key(target.host_key)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise RemoteError(f"host {target.name}: the pinned SSH host key is unusable: {exc}") from None
    options = {"known_hosts": ([pinned], [], []), "username": target.username, "port": target.port,
               "connect_timeout": CONNECT_TIMEOUT, "config": None}
    if client_keys:
        options.update(client_keys=list(client_keys), agent_path=None)
    try:
        connection = await asyncssh.connect(target.address, **options)
    except (TimeoutError, asyncssh.Error, OSError, ValueError) as exc:
        raise _connect_error(target, exc) from None
    host = RemoteHost(target, connection)
    try:
        yield host
    finally:
        if host._sftp is not None:
            host._sftp.exit()
        connection.close()
        await connection.wait_closed()


def _as_bytes(data: bytes | str | None) -> bytes:
    """asyncssh types its output as text or bytes; onehop always asks for bytes."""
    if isinstance(data, str):
        return data.encode("utf-8")
    return data or b""
