"""``onehop network deploy --host H``: one host brought to what the database says.

Over one management SSH connection (pinned host key; a mismatch aborts before anything
is sent), in this order:

1. facts: systemd or not, the Python version (3.11+ needed);
2. software: the wheel and the constraints are uploaded; when the wheel differs from the
   installed one (``ROOT/wheels/installed.sha256``) the virtual environment is created
   if missing and ``onehop[server]`` installed from the host's pip index;
3. files: per live server of the host, server.json (0600, with the host's log file),
   server-entry.dat and psinet.json, each replaced atomically and only when changed;
4. servers of the host that were retired since are stopped and their configs removed
   (their logs stay for ``stats ingest``);
5. each server is (re)started when its config or the software changed, when it is not
   running, or with ``--restart``; a server whose psinet.json alone changed keeps running
   (it reloads the file itself).

Then, from here, every server is checked (``check``): TCP, a silent probe and an OSSH
handshake with its signed entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import DeployError
from ..remote import RemoteHost, SshTarget, connect, quote
from .check import CheckResult, check_server
from .layout import Layout, deployed_config, probe_script
from .services import Nohup, Systemd, service_manager
from .wheel import Wheel

MIN_PYTHON = (3, 11)
PIP = "-m pip install --quiet --disable-pip-version-check --no-input"


@dataclass(frozen=True)
class ServerBundle:
    """What one server needs on its host (as ``export`` writes it)."""

    id: str
    config: bytes
    entry: str
    psinet: bytes


@dataclass(frozen=True)
class DeployOptions:
    root: str = "/opt/onehop"
    python: str = "/usr/bin/python3"
    service: str = "auto"            # auto | systemd | nohup
    restart: bool = False
    geoip: tuple[Path, ...] = ()
    ssh_keys: tuple[str, ...] = ()
    check_timeout: float = 60.0


@dataclass
class ServerOutcome:
    server: str
    config_changed: bool = False
    psinet_changed: bool = False
    action: str = ""
    check_ok: bool | None = None
    check: str = ""
    check_ms: int = 0


@dataclass
class DeployResult:
    host: str
    root: str
    service_manager: str = ""
    python: str = ""
    wheel: str = ""
    wheel_sha256: str = ""
    software_installed: bool = False
    servers: list[ServerOutcome] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.check_ok is not False for s in self.servers)

    def as_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "servers"},
                "servers": [asdict(s) for s in self.servers], "ok": self.ok}


async def _facts(remote: RemoteHost, options: DeployOptions, result: DeployResult) -> str:
    line = (await remote.run(probe_script(options.python), what="probing the host")).text.split()
    if len(line) < 3:
        raise DeployError(f"{remote.target.name}: unexpected answer to the probe: {' '.join(line)!r}")
    detected, version, _uid = line[:3]
    if version == "none":
        raise DeployError(f"{remote.target.name}: no Python at {options.python} (give --python)")
    if tuple(int(p) for p in version.split(".")) < MIN_PYTHON:
        raise DeployError(f"{remote.target.name}: {options.python} is Python {version}; onehop needs 3.11+")
    result.python = version
    kind = detected if options.service == "auto" else options.service
    if kind == "nohup":
        result.notes.append(Nohup.note if detected != "systemd" else
                            "--service nohup: servers run under nohup with a pidfile although the host has systemd")
    return kind


async def _install(remote: RemoteHost, layout: Layout, options: DeployOptions, wheel: Wheel,
                   constraints: str) -> bool:
    """Upload the wheel; install it (and its dependencies) unless it is already installed."""
    path, pins = f"{layout.wheels}/{wheel.name}", f"{layout.wheels}/constraints.txt"
    await remote.write_file(path, wheel.data, 0o644)
    await remote.write_file(pins, constraints.encode("utf-8"), 0o644)
    marker = await remote.read_file(f"{layout.wheels}/installed.sha256")
    works = await remote.run(f"test -x {quote(layout.onehop)}", check=False)
    if marker is not None and marker.decode("ascii", "replace").strip() == wheel.sha256 and works.exit_status == 0:
        return False
    venv_python = f"{layout.venv}/bin/python"
    await remote.run(f"test -x {quote(venv_python)} || {quote(options.python)} -m venv {quote(layout.venv)}",
                     what="creating the virtual environment (Debian: apt-get install python3-venv)")
    await remote.run(f"{quote(venv_python)} {PIP} -c {quote(pins)} {quote(path + '[server]')}",
                     timeout=1800, what="installing onehop[server] and its dependencies")
    await remote.run(f"{quote(venv_python)} {PIP} --force-reinstall --no-deps {quote(path)}",
                     timeout=600, what="installing the onehop wheel")
    await remote.run(f"{quote(layout.onehop)} server --help > /dev/null", what="running the installed onehop")
    await remote.run(f"find {quote(layout.wheels)} -name 'onehop-*.whl' ! -name {quote(wheel.name)} -delete",
                     check=False)
    await remote.write_file(f"{layout.wheels}/installed.sha256", (wheel.sha256 + "\n").encode("ascii"), 0o644)
    return True


async def _geoip(remote: RemoteHost, layout: Layout, files: tuple[Path, ...]) -> list[str]:
    names = []
    for path in files:
        await remote.write_file(layout.geoip(path.name), path.read_bytes(), 0o644)
        names.append(path.name)
    return names


async def _deployed_ids(remote: RemoteHost, layout: Layout) -> list[str]:
    listing = await remote.run(f"ls -1 {quote(layout.root + '/servers')} 2>/dev/null", check=False)
    return [n for n in listing.text.split() if n and not n.startswith(".")]


async def _stop_retired(remote: RemoteHost, layout: Layout, manager, live: set[str]) -> list[str]:
    stopped = []
    for server_id in await _deployed_ids(remote, layout):
        if server_id not in live:
            await manager.stop(server_id)
            await remote.run(f"rm -rf -- {quote(layout.server_dir(server_id))}", what=f"removing {server_id}")
            stopped.append(server_id)
    return stopped


async def _files(remote: RemoteHost, layout: Layout, bundle: ServerBundle, geoip: list[str],
                 outcome: ServerOutcome) -> None:
    await remote.run(f"mkdir -p {quote(layout.server_dir(bundle.id))} {quote(layout.log_dir(bundle.id))} && "
                     f"chmod 700 {quote(layout.server_dir(bundle.id))}", what="creating the server directories")
    directory = layout.server_dir(bundle.id)
    config = deployed_config(bundle.config, layout, bundle.id, geoip)
    outcome.config_changed = await remote.write_file(f"{directory}/server.json", config, 0o600)
    await remote.write_file(f"{directory}/server-entry.dat", (bundle.entry.strip() + "\n").encode("ascii"), 0o644)
    outcome.psinet_changed = await remote.write_file(f"{directory}/psinet.json", bundle.psinet, 0o600)  # HMAC key


async def _start(manager: Nohup | Systemd, outcome: ServerOutcome, software: bool, force: bool) -> None:
    running = await manager.running(outcome.server)
    if force or software or outcome.config_changed or not running:
        await manager.restart(outcome.server)
        outcome.action = "restarted" if running else "started"
    else:
        outcome.action = "running (psinet reloaded by the server)" if outcome.psinet_changed else "running, unchanged"


async def _prepare_dirs(remote: RemoteHost, layout: Layout) -> None:
    dirs = " ".join(quote(f"{layout.root}/{d}") for d in ("servers", "logs", "run", "wheels", "geoip"))
    await remote.run(f"mkdir -p {dirs} && chmod 700 {quote(layout.root + '/servers')}",
                     what=f"creating {layout.root}")


async def deploy_host(target: SshTarget, bundles: list[ServerBundle], wheel: Wheel | Callable[[], Wheel],
                      constraints: str, options: DeployOptions) -> DeployResult:
    """``wheel`` may be a function making it: it is called once the host is verified."""
    layout = Layout(options.root.rstrip("/"))
    result = DeployResult(target.name, layout.root)
    async with connect(target, options.ssh_keys) as remote:
        kind = await _facts(remote, options, result)
        manager = service_manager(kind, remote, layout)
        result.service_manager = manager.name
        if not isinstance(wheel, Wheel):
            wheel = await asyncio.to_thread(wheel)
        result.wheel, result.wheel_sha256 = wheel.name, wheel.sha256
        await _prepare_dirs(remote, layout)
        result.software_installed = await _install(remote, layout, options, wheel, constraints)
        geoip = await _geoip(remote, layout, options.geoip)
        result.servers = [ServerOutcome(b.id) for b in bundles]
        for bundle, outcome in zip(bundles, result.servers, strict=True):
            await _files(remote, layout, bundle, geoip, outcome)
        result.stopped = await _stop_retired(remote, layout, manager, {b.id for b in bundles})
        await manager.prepare()
        for outcome in result.servers:
            await _start(manager, outcome, result.software_installed, options.restart)
    checks = await asyncio.gather(*(check_server(b.id, b.entry, options.check_timeout) for b in bundles))
    for outcome, check in zip(result.servers, checks, strict=True):
        _record_check(outcome, check)
    return result


def _record_check(outcome: ServerOutcome, check: CheckResult) -> None:
    outcome.check_ok, outcome.check, outcome.check_ms = check.ok, check.detail, check.milliseconds


async def stop_host(target: SshTarget, options: DeployOptions) -> DeployResult:
    """``deploy --stop``: stop every onehop server deployed on the host (configs stay)."""
    layout = Layout(options.root.rstrip("/"))
    result = DeployResult(target.name, layout.root)
    async with connect(target, options.ssh_keys) as remote:
        kind = await _facts(remote, options, result)
        manager = service_manager(kind, remote, layout)
        result.service_manager = manager.name
        for server_id in await _deployed_ids(remote, layout):
            await manager.stop(server_id)
            result.stopped.append(server_id)
    return result
