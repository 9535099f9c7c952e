"""``onehop network deploy``: a real deployment over a private sshd on loopback (a host
without systemd: nohup with pidfiles), a client through the deployed server, updates
that restart only what changed, retirement, stats from the host; and the systemd path
against a recording stand-in for the host."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
from pathlib import Path

import pytest

from onehop.client.candidates import MemoryStore
from onehop.client.config import ClientConfig
from onehop.client.controller import Controller
from onehop.client.notices import Notices
from onehop.core.serverentry import decode_server_entry
from onehop.demo import serve_page
from tests.helpers.net import free_port
from onehop.network.deploy import run as deploy_run
from onehop.network.deploy.check import CheckResult
from onehop.network.deploy.layout import UNIT_PATH, Layout
from onehop.network.deploy.wheel import Wheel, build_wheel, source_tree
from onehop.network.remote import RemoteError, RunResult, SshTarget
from tests.helpers.waiting import wait_until
from tests.e2e.proxyclient import http_get_via_socks
from tests.helpers.procs import pid_alive
from tests.helpers.sshd import private_sshd

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def server_pids(root: Path) -> dict[str, int]:
    run = root / "run"
    return {p.stem: int(p.read_text()) for p in run.glob("*.pid")} if run.is_dir() else {}


@contextlib.contextmanager
def cleanup_servers(root: Path):
    """Whatever happens, stop the servers this test deployed (by their recorded pids)."""
    try:
        yield
    finally:
        for pid in server_pids(root).values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


async def through(entry_hex: str, tmp_path: Path, body_port: int) -> bytes:
    config = ClientConfig(data_dir=str(tmp_path / "client"), socks_port=0, http_port=0,
                          tunnel_connect_timeout=10.0, establish_pause=0.2, protocols=("OSSH",))
    controller = Controller(config, MemoryStore([decode_server_entry(entry_hex)]), Notices(None))
    await controller.start_proxies()
    task = asyncio.get_running_loop().create_task(controller.run())
    try:
        await wait_until(lambda: controller.active is not None, 30)
        return await http_get_via_socks(controller.socks_port, "127.0.0.1", body_port)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await controller.close()


async def test_deploy_to_a_host_without_systemd(sqlite_cli, tmp_path):
    cli = sqlite_cli

    async def run(*args):
        return await asyncio.to_thread(cli.run, *args)

    root = tmp_path / "host-root"
    cli.ok("sponsor", "add", "--name", "Acme", "--home-page", "https://acme.example/")
    cli.ok("channel", "add", "--name", "c1")
    body = b"<html>deployed</html>" * 500
    page, page_port = await serve_page(body)
    with private_sshd(tmp_path / "sshd") as sshd, cleanup_servers(root):
        cli.ok("host", "add", "--name", "lo", "--ip", "127.0.0.1", "--region", "DE", "--ssh-port", sshd.port,
               "--ssh-host-key", sshd.other_host_key)
        ip = "127.0.0.61"
        first = cli.ok("server", "add", "--host", "lo", "--channel", "c1", "--ip", ip, "--ossh-port",
                       free_port(ip), "--allow-bogons")
        deploy = ("deploy", "--host", "lo", "--root", root, "--ssh-key", sshd.client_key, "--json")

        refused = await run(*deploy)  # the pinned key is not the host's: nothing is sent
        assert refused.rc == 1 and "does not match the key pinned" in refused.err and not root.exists()
        cli.ok("host", "set-key", "--name", "lo", "--ssh-host-key", sshd.host_key)

        done = await run(*deploy)  # builds the wheel from this tree
        assert done.rc == 0, done.err + done.out
        (wheel,) = (root / "wheels").glob("onehop-*.whl")
        deploy += ("--source", wheel)  # the same wheel from now on: the tree may change meanwhile
        result = done.json()
        assert result["service_manager"] == "nohup" and "no systemd" in done.err
        assert result["software_installed"] and result["wheel"].startswith("onehop-")
        (server,) = result["servers"]
        assert server["server"] == first["id"] and server["action"] == "started" and server["check_ok"]
        assert "OSSH handshake completed" in server["check"]
        config = root / "servers" / first["id"] / "server.json"
        assert oct(config.stat().st_mode & 0o777) == "0o600"
        pid = server_pids(root)[first["id"]]
        assert pid_alive(pid)

        cli.ok("export", "--out", tmp_path / "export")
        entry = (tmp_path / "export" / first["id"] / "server-entry.dat").read_text().strip()
        assert await through(entry, tmp_path, page_port) == body  # a client through the deployed server

        again = (await run(*deploy)).json()  # nothing changed: nothing reinstalled or restarted
        assert again["wheel_sha256"] == result["wheel_sha256"]
        assert not again["software_installed"] and again["servers"][0]["action"] == "running, unchanged"
        assert server_pids(root)[first["id"]] == pid
        cli.ok("sponsor", "homepage", "--sponsor", "Acme", "--add", "https://acme.example/new")
        reloaded = (await run(*deploy, "--from-export", tmp_path / "export")).json()
        assert reloaded["servers"][0]["action"] == "running, unchanged"  # the export predates the change
        cli.ok("export", "--out", tmp_path / "export")
        reloaded = (await run(*deploy, "--from-export", tmp_path / "export")).json()
        assert reloaded["servers"][0]["psinet_changed"] and reloaded["servers"][0]["action"].startswith("running")
        assert server_pids(root)[first["id"]] == pid

        ip2 = "127.0.0.62"
        second = cli.ok("server", "add", "--host", "lo", "--channel", "c1", "--ip", ip2, "--ossh-port",
                        free_port(ip2), "--allow-bogons")
        cli.ok("server", "retire", "--server", first["id"])
        moved = (await run(*deploy)).json()
        assert moved["stopped"] == [first["id"]] and [s["server"] for s in moved["servers"]] == [second["id"]]
        assert moved["ok"] and not pid_alive(pid) and not (root / "servers" / first["id"]).exists()
        assert (root / "logs" / first["id"] / "events.jsonl").is_file()  # kept for stats

        ingest = await asyncio.to_thread(cli.ok, "stats", "ingest", "--from", f"ssh://lo{root}/logs",
                                         "--ssh-key", sshd.client_key)
        assert ingest["events_added"]["server_tunnel"] >= 5 and ingest["unresolved_events"] == 0
        report = cli.ok("stats", "report")
        by_server = {r["server"]: r["connections"] for r in report["by_server"]}
        assert by_server == {first["id"]: 1}  # the client's tunnel; the deploy checks are not counted

        stopped = await run("deploy", "--host", "lo", "--root", root, "--ssh-key", sshd.client_key, "--stop",
                            "--json")
        assert stopped.json()["stopped"] == [second["id"]]
        assert not any(pid_alive(p) for p in server_pids(root).values())
    page.close()
    actions = [a["action"] for a in cli.ok("audit")]
    assert actions.count("host.deploy") == 5 and "host.stop" in actions and "host.set-key" in actions


class FakeHost:
    """A host with systemd, as far as deploy can tell: commands recorded, files kept."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.files: dict[str, tuple[bytes, int]] = {}
        self.active: set[str] = set()
        self.installed = False
        self.target = SshTarget("sys1", "192.0.2.9", 22, "root", "ssh-ed25519 AAAA")

    async def run(self, command: str, *, check: bool = True, timeout=None, what=None) -> RunResult:
        self.commands.append(command)
        out = b""
        status = 0
        if "sys.version_info" in command:
            out = b"systemd 3.11 0\n"
        elif command.startswith("systemctl is-active") or "; systemctl is-active" in command:
            status = 0 if any(u in command for u in self.active) else 3
        elif "systemctl restart" in command:
            self.active.add(command.rsplit(" ", 1)[-1])
        elif "--force-reinstall" in command:
            self.installed = True
        elif command.startswith("test -x") and "venv/bin/onehop" in command:
            status = 0 if self.installed else 1
        if check and status:
            raise RemoteError(f"{command} failed")
        return RunResult(status, out, "")

    async def read_file(self, path: str, offset: int = 0, size: int = -1):
        return self.files.get(path, (None, 0))[0]

    async def write_file(self, path: str, data: bytes, mode: int = 0o644) -> bool:
        if self.files.get(path) == (data, mode):
            return False
        self.files[path] = (data, mode)
        return True


async def test_a_host_with_systemd_gets_a_unit_per_server(monkeypatch):
    host = FakeHost()

    @contextlib.asynccontextmanager
    async def fake_connect(target, keys):
        yield host

    async def fake_check(server_id, entry, timeout):
        return CheckResult(server_id, True, "checked", 1)

    monkeypatch.setattr(deploy_run, "connect", fake_connect)
    monkeypatch.setattr(deploy_run, "check_server", fake_check)
    bundle = deploy_run.ServerBundle("sys1-1", b'{"HostID": "sys1"}', "00", b"{}")
    options = deploy_run.DeployOptions(root="/opt/onehop")
    result = await deploy_run.deploy_host(host.target, [bundle], Wheel("onehop-0.1.0-py3-none-any.whl", b"w"),
                                          "", options)
    assert result.service_manager == "systemd" and result.notes == [] and result.ok
    unit = host.files[UNIT_PATH][0].decode()
    assert "ExecStart=/opt/onehop/venv/bin/onehop server run --config /opt/onehop/servers/%i/server.json" in unit
    assert "Restart=on-failure" in unit and "ReadWritePaths=/opt/onehop/logs" in unit
    joined = "\n".join(host.commands)
    assert "systemctl daemon-reload" in joined
    assert "systemctl enable --quiet onehop-server@sys1-1.service && systemctl restart onehop-server@sys1-1.service" \
        in joined
    assert "/usr/bin/python3 -m venv /opt/onehop/venv" in joined
    assert "'/opt/onehop/wheels/onehop-0.1.0-py3-none-any.whl[server]'" in joined
    layout = Layout("/opt/onehop")
    config = host.files[layout.config("sys1-1")]
    assert config[1] == 0o600 and b'"LogFilename": "/opt/onehop/logs/sys1-1/events.jsonl"' in config[0]
    assert result.servers[0].action == "started"
    # deployed again unchanged: the unit is not rewritten, the server not restarted
    host.commands.clear()
    again = await deploy_run.deploy_host(host.target, [bundle], Wheel("onehop-0.1.0-py3-none-any.whl", b"w"),
                                         "", options)
    assert "systemctl daemon-reload" not in host.commands
    assert not any("systemctl restart" in c or "pip install" in c for c in host.commands)
    assert not again.software_installed and again.servers[0].action == "running, unchanged"


def test_the_wheel_build_is_reproducible_and_leaves_the_tree_alone(tmp_path):
    tree = tmp_path / "tree"  # a snapshot: other work on the real tree must not change the bytes
    shutil.copytree(source_tree(), tree, ignore=shutil.ignore_patterns("build", "tests", "bench", ".*",
                                                                        "__pycache__", "*.egg-info"))
    first, second = build_wheel(tree), build_wheel(tree)
    assert first.name.startswith("onehop-") and first.name.endswith("-py3-none-any.whl")
    assert first.sha256 == second.sha256
    assert not (tree / "build").exists() and not list((tree / "src").glob("*.egg-info"))
    import zipfile
    with zipfile.ZipFile(io.BytesIO(first.data)) as archive:
        names = archive.namelist()
    assert "onehop/network/migrations/versions/0004_client_builds.py" in names
    assert "onehop/server/service.py" in names
