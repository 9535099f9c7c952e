"""End to end: a database -> exported servers running -> a published client build run as
a separate program on a machine without onehop -> a page through its tunnel, and a
discovery server handed out by the handshake."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import sys
import zipfile

import pytest
from aiohttp import web

from onehop.client.config import parse_client_config
from onehop.core.authpackage import read_package
from onehop.core.serverentry import decode_server_list
from onehop.demo import serve_page
from tests.helpers.net import free_port
from onehop.server.config import load_server_config
from onehop.server.service import TunnelServer
from tests.e2e.proxyclient import http_get_via_socks

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def provision(cli, ips: list[str]) -> dict:
    """Embedded servers on ips[:-1], a discovery server on ips[-1], all on free ports."""
    sponsor = cli.ok("sponsor", "add", "--name", "Acme", "--home-page", "https://acme.example/")
    channel = cli.ok("channel", "add", "--name", "Email 1")
    campaign = cli.ok("campaign", "add", "--channel", channel["id"], "--sponsor", "Acme", "--mechanism", "email",
                      "--email", "get@example.org")
    servers = []
    for n, ip in enumerate(ips):
        cli.ok("host", "add", "--name", f"lo{n}", "--ip", ip, "--region", "CA", "--ssh-port", str(free_port(ip)))
        extra = ["--discovery-days", "2"] if ip == ips[-1] else []
        servers.append(cli.ok("server", "add", "--host", f"lo{n}", "--channel", channel["id"], "--allow-bogons",
                              "--ossh-port", free_port(ip), "--ssh-port", free_port(ip), *extra))
    cli.ok("client-version", "add", "--version", "7")
    return {"sponsor": sponsor, "channel": channel, "campaign": campaign, "servers": servers}


async def read_notices(process, until, timeout: float) -> list[dict]:
    seen: list[dict] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while not until(seen):
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            line = await asyncio.wait_for(process.stdout.readline(), max(remaining, 0.01))
        except TimeoutError:
            raise AssertionError(f"no tunnel after {timeout}s; notices: {seen[-15:]}") from None
        if not line:
            raise AssertionError(f"client exited: {(await process.stderr.read()).decode()[-2000:]}")
        seen.append(json.loads(line))
    return seen


def tunnels_up(seen: list[dict]) -> bool:
    return any(n["noticeType"] == "Tunnels" and n["data"] == {"count": 1} for n in seen)


def discovered(seen: list[dict]) -> list[dict]:
    return [n for n in seen if n["noticeType"] == "Info" and n["data"].get("message") == "discovered server entries"]


def tunnel_and_discovery(seen: list[dict]) -> bool:
    return tunnels_up(seen) and bool(discovered(seen))


def check_build(path, net, keys, base_url: str) -> None:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        config = json.loads(archive.read("site-packages/onehop_embedded/config.json"))
        server_list = archive.read("site-packages/onehop_embedded/server_list.dat").decode()
    assert not [n for n in names if n.startswith(("site-packages/onehop/network/", "site-packages/onehop/mail/"))]
    parsed = parse_client_config(config, "embedded")
    assert parsed.propagation_channel_id == net["channel"]["id"] and parsed.sponsor_id == net["sponsor"]["id"]
    assert parsed.client_version == "7"
    for name, value in keys.items():
        assert config[name] == value
    (remote,) = config["RemoteServerListURLs"]
    assert base64.b64decode(remote["URL"]).decode() == f"{base_url}/{net['channel']['site_id']}/server_list_compressed"
    assert remote["OnlyAfterAttempts"] == 0 and remote["SkipVerify"] is False
    entries, errors = decode_server_list(server_list)
    assert errors == [] and len(entries) == len(net["servers"]) - 1  # the discovery server is not embedded


@contextlib.asynccontextmanager
async def running_network(cli, tmp_path, ips: list[str]):
    """Provision, export, start every exported server, serve the publish dir over HTTP."""
    net = provision(cli, ips)
    out, site = tmp_path / "export", tmp_path / "site"
    site.mkdir()
    cli.ok("export", "--out", out)
    running, runner = [], None
    try:
        for server in net["servers"]:
            running.append(TunnelServer(load_server_config(out / server["id"] / "server.json")))
            await running[-1].start()
        app = web.Application()
        app.router.add_static("/", site)
        runner = web.AppRunner(app)
        await runner.setup()
        http = web.TCPSite(runner, "127.0.0.1", 0)
        await http.start()
        port = runner.addresses[0][1]
        yield {**net, "out": out, "site": site, "base_url": f"http://127.0.0.1:{port}/web"}
    finally:
        if runner is not None:
            await runner.cleanup()
        for server in running:
            await server.stop()


@contextlib.asynccontextmanager
async def client_process(*args: str, home):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "SHIV_ROOT": str(home / "shiv")}
    process = await asyncio.create_subprocess_exec(
        *args, "--socks-port", "0", "--http-port", "0", cwd=home, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_a_published_build_connects_through_the_exported_network(sqlite_cli, tmp_path):
    keys = sqlite_cli.ok("keys", "show")
    page_server, page_port = await serve_page(b"<html>through onehop</html>" * 1000)
    async with running_network(sqlite_cli, tmp_path, ["127.0.0.31", "127.0.0.32", "127.0.0.33"]) as net:
        manifest = sqlite_cli.ok("publish", "--to", net["site"] / "web", "--base-url", net["base_url"])
        (build,) = [i for i in manifest if i["kind"] == "client-build"]
        (upgrade,) = [i for i in manifest if i["kind"] == "upgrade-package"]
        build_path = net["site"] / "web" / build["path"]
        check_build(build_path, net, keys, net["base_url"])
        package = read_package((net["site"] / "web" / upgrade["path"]).read_bytes(),
                               keys["UpgradeSignaturePublicKey"], "gzip")
        header, body = package.split("\n\n")
        embedded = json.loads(zipfile.ZipFile(build_path).read("site-packages/onehop_embedded/config.json"))
        assert header == f"onehop-upgrade/1\nversion: {embedded['ClientVersion']}\nplatform: Other"  # bound
        assert base64.b64decode(body) == build_path.read_bytes()

        home = tmp_path / "home"
        home.mkdir()
        # -S -E: no site-packages, no PYTHON* variables: only what the build carries
        async with client_process(sys.executable, "-S", "-E", str(build_path), "client",
                                  "--data-dir", str(home / "client"), home=home) as process:
            seen = await read_notices(process, tunnel_and_discovery, 60)
            socks_port = next(n["data"]["port"] for n in seen if n["noticeType"] == "ListeningSocksProxyPort")
            body = await http_get_via_socks(socks_port, "127.0.0.1", page_port)
        page_server.close()
        assert body == b"<html>through onehop</html>" * 1000
        assert any(n["noticeType"] == "Homepage" and n["data"]["url"] == "https://acme.example/" for n in seen)
        assert discovered(seen)[0]["data"]["imported"] == 1  # the discovery server, from psinet.json

        sqlite_cli.ok("export", "--out", net["out"])  # the responder now attaches the published build
        responder = json.loads((net["out"] / "mail" / "responder.json").read_text())
        entry = responder["addresses"]["get@example.org"]
        assert entry["links"] == [build["url"]] and entry["attachment"]["filename"] == "onehop-email-1.zip"
        attached = (net["out"] / "mail" / entry["attachment"]["path"]).read_bytes()
        assert hashlib.sha256(attached).hexdigest() == build["sha256"]
        mail_config = pytest.importorskip("onehop.mail.config")  # the responder (issue 5) accepts it
        loaded = mail_config.load_responder_config(net["out"] / "mail" / "responder.json")
        assert loaded.campaigns["get@example.org"].attachment.filename == "onehop-email-1.zip"


async def test_a_client_bootstraps_from_the_published_remote_list_alone(sqlite_cli, tmp_path):
    keys = sqlite_cli.ok("keys", "show")
    async with running_network(sqlite_cli, tmp_path, ["127.0.0.35", "127.0.0.36"]) as net:
        manifest = sqlite_cli.ok("publish", "--to", net["site"] / "web", "--base-url", net["base_url"],
                                 "--no-builds")
        remote = next(i for i in manifest if i["kind"] == "remote-server-list")
        config = {"PropagationChannelId": net["channel"]["id"], "SponsorId": net["sponsor"]["id"],
                  "RemoteServerListURLs": [{"URL": base64.b64encode(remote["url"].encode()).decode(),
                                            "OnlyAfterAttempts": 0, "SkipVerify": False}],
                  "RemoteServerListSignaturePublicKey": keys["RemoteServerListSignaturePublicKey"],
                  "EstablishTunnelPausePeriodSeconds": 0.2}
        home = tmp_path / "home"
        home.mkdir()
        (home / "client.json").write_text(json.dumps(config))
        async with client_process(sys.executable, "-m", "onehop.cli", "client", "--config", str(home / "client.json"),
                                  "--data-dir", str(home / "client"), home=home) as process:
            seen = await read_notices(process, tunnels_up, 60)
        assert any(n["noticeType"] == "RemoteServerListResourceDownloaded" for n in seen)


def test_build_client_command(sqlite_cli, tmp_path):
    net = provision(sqlite_cli, ["127.0.0.41", "127.0.0.42"])
    out = tmp_path / "client.pyz"
    result = sqlite_cli.ok("build-client", "--channel", "Email 1", "--sponsor", "Acme", "--out", out,
                           "--base-url", "https://s3.amazonaws.com/bucket/web")
    assert result["servers"] == 1 and result["client_version"] == "7" and os.access(out, os.X_OK)
    assert result["remote_server_list_urls"] == [
        f"https://s3.amazonaws.com/bucket/web/{net['channel']['site_id']}/server_list_compressed"]
    assert result["upgrade_urls"] == [
        f"https://s3.amazonaws.com/bucket/web/{net['campaign']['site_id']}/onehop-client.pyz.upgrade"]
    again = sqlite_cli.ok("build-client", "--channel", "Email 1", "--sponsor", "Acme", "--out", tmp_path / "b.pyz",
                          "--base-url", "https://s3.amazonaws.com/bucket/web")
    assert again["cached"] and again["sha256"] == result["sha256"]  # reproducible, so cached
    assert "unknown sponsor" in sqlite_cli.fails("build-client", "--channel", "Email 1", "--sponsor", "nope",
                                                 "--out", tmp_path / "x.pyz")
