"""Standalone client builds (PyInstaller, issue 20): run with an empty environment against
servers on loopback, upgraded through a published delta and rolled back, and tampered
builds refused by the upgrade path and by publish.

The PyInstaller runtime is frozen once per session (about 40 s) into a cache keyed by
its inputs (``ONEHOP_TEST_BUILD_CACHE``, default ``~/.cache/onehop/test-builds``), so a
later session with the same inputs reuses it; every build after that only embeds a
channel's files (about a second).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onehop.client.upgrade.check import check_and_download_upgrade
from onehop.client.upgrade.install import Installation
from onehop.demo import serve_page
from onehop.network import standalone
from onehop.network.builds import Builder, BuildSpec
from onehop.network.db import Database
from onehop.network.keys import load as load_keys
from tests.e2e.fakes import FileServer
from tests.e2e.proxyclient import http_get_via_socks
from tests.network.test_e2e_network import read_notices, running_network, tunnels_up
from tests.upgrade.conftest import FakeController, upgrade_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux standalone builds only")]

MAX_SIZE = 30_000_000


@pytest.fixture(scope="session")
def build_cache() -> Path:
    """A build cache shared by the session, holding the frozen runtime (made here, once)."""
    pytest.importorskip("PyInstaller")
    if shutil.which("objcopy") is None:
        pytest.fail("objcopy (binutils) is needed for Linux standalone builds")
    cache = Path(os.environ.get("ONEHOP_TEST_BUILD_CACHE") or Path.home() / ".cache" / "onehop" / "test-builds")
    spec = BuildSpec("CHANNEL", "SPONSOR", "1", ())
    with Builder(cache) as builder:  # freezes the runtime (cached by its inputs), embeds a dummy channel
        builder.build(spec, _dummy_keys(), cache / "warm.tmp", "standalone")
    (cache / "warm.tmp").unlink()
    return cache


def _dummy_keys():
    class Keys:
        def public_keys(self):
            return {name: "" for name in ("RemoteServerListSignaturePublicKey", "ServerEntrySignaturePublicKey",
                                          "FeedbackEncryptionPublicKey", "UpgradeSignaturePublicKey")}
    return Keys()


def embedded(data: bytes) -> dict[str, bytes]:
    start, end, cookie = standalone.find_archive(data)
    pkg = data[start:end]
    import zlib
    return {name.split("/", 1)[1]: zlib.decompress(pkg[offset:offset + stored])
            for offset, stored, _, _, _, name in standalone.read_toc(pkg, cookie[2], cookie[3])
            if name.startswith("onehop_embedded/")}


@contextlib.asynccontextmanager
async def mirror_of(site: Path):
    """The published directory over HTTP (ETag, Range), as an upgrade mirror serves it."""
    server = FileServer()
    server.files = {"/" + str(p.relative_to(site)): p.read_bytes() for p in site.rglob("*") if p.is_file()}
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def run_empty_env(program: Path, *args: str, home: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["env", "-i", f"HOME={home}", str(program), *args], cwd=home, capture_output=True,
                          text=True, timeout=60, **kw)


async def test_a_standalone_build_runs_with_an_empty_environment(sqlite_cli, tmp_path, build_cache):
    keys = sqlite_cli.ok("keys", "show")
    page_server, page_port = await serve_page(b"<html>standalone</html>" * 500)
    async with running_network(sqlite_cli, tmp_path, ["127.0.0.51", "127.0.0.52"]) as net:
        manifest = sqlite_cli.ok("publish", "--to", net["site"] / "web", "--base-url", net["base_url"],
                                 "--format", "standalone", "--build-cache", build_cache)
        (build,) = [i for i in manifest if i["kind"] == "client-build"]
        assert build["path"].endswith("/onehop-client") and build["size"] <= MAX_SIZE
        data = (net["site"] / "web" / build["path"]).read_bytes()
        config = json.loads(embedded(data)["config.json"])
        assert config["PropagationChannelId"] == net["channel"]["id"] and config["ClientVersion"] == "7"
        assert config["UpgradeSignaturePublicKey"] == keys["UpgradeSignaturePublicKey"]
        for item in manifest:  # no list on the mirror: servers can only come from the embedded list
            if item["kind"] == "remote-server-list":
                (net["site"] / "web" / item["path"]).unlink()

        home = tmp_path / "home"
        home.mkdir()
        program = home / "onehop-email-1-linux"
        program.write_bytes(data)
        program.chmod(0o755)
        process = await __import__("asyncio").create_subprocess_exec(
            "env", "-i", f"HOME={home}", str(program), "client", "--socks-port", "0", "--http-port", "0",
            "--ui", "--no-browser",
            cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            seen = await read_notices(process, lambda s: tunnels_up(s) and any(
                n["noticeType"] == "Homepage" for n in s), 60)
            socks = next(n["data"]["port"] for n in seen if n["noticeType"] == "ListeningSocksProxyPort")
            body = await http_get_via_socks(socks, "127.0.0.1", page_port)
            # The web UI's page and files are in the frozen program (PyInstaller bundles only
            # modules unless told: the page was a 500 in standalone builds).
            ui_port = next(n["data"]["port"] for n in seen if n["noticeType"] == "ListeningWebUIPort")
            import aiohttp
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{ui_port}/") as page:
                assert page.status == 200 and "<html" in (await page.text()).lower()
        finally:
            process.terminate()
            await process.wait()
        page_server.close()
        assert body == b"<html>standalone</html>" * 500
        assert any(n["noticeType"] == "Homepage" and n["data"]["url"] == "https://acme.example/" for n in seen)

        sqlite_cli.ok("export", "--out", net["out"], "--build-cache", build_cache)
        entry = json.loads((net["out"] / "mail" / "responder.json").read_text())["addresses"]["get@example.org"]
        attachment = entry["attachment"]
        assert attachment["format"] == "standalone" and attachment["filename"] == "onehop-email-1-linux"
        assert (net["out"] / "mail" / attachment["path"]).read_bytes() == data
        mail_config = pytest.importorskip("onehop.mail.config")
        loaded = mail_config.load_responder_config(net["out"] / "mail" / "responder.json")
        assert loaded.campaigns["get@example.org"].attachment.build_format == "standalone"


def _builds(cli, tmp_path, cache: Path) -> tuple[bytes, bytes]:
    """Version 1 and version 2 of one channel's standalone build."""
    sponsor = cli.ok("sponsor", "add", "--name", "Acme", "--home-page", "https://acme.example/")
    channel = cli.ok("channel", "add", "--name", "Email 1")
    with Database.open(cli.url).transaction() as session:
        keys = load_keys(session)
    out = []
    with Builder(cache) as builder:
        for version in ("1", "2"):
            spec = BuildSpec(channel["id"], sponsor["id"], version, ())
            out.append(builder.build(spec, keys, tmp_path / f"v{version}", "standalone").path.read_bytes())
    return out[0], out[1]


async def test_standalone_upgrade_through_a_published_delta_then_rollback(sqlite_cli, tmp_path, build_cache):
    v1, v2 = _builds(sqlite_cli, tmp_path, build_cache)
    for version, data in (("1", v1), ("2", v2)):
        (tmp_path / "onehop-client").write_bytes(data)
        added = sqlite_cli.ok("client-version", "add", "--version", version, "--file", tmp_path / "onehop-client")
    delta = next(p for p in added["upgrade_packages"] if p["kind"] == "delta")
    assert delta["saving"] > 0.9  # two builds of one runtime differ in their embedded files only
    site = tmp_path / "site"
    manifest = sqlite_cli.ok("publish", "--to", site, "--format", "standalone", "--build-cache", build_cache)
    full = next(i for i in manifest if i["kind"] == "client-upgrade" and i["path"].endswith("onehop-client.upgrade"))

    home = tmp_path / "home"
    home.mkdir()
    installed = home / "onehop-client"
    installed.write_bytes(v1)
    installed.chmod(0o755)
    async with mirror_of(site) as mirror:
        keys = sqlite_cli.ok("keys", "show")
        config = dataclasses.replace(upgrade_config(home, keys["UpgradeSignaturePublicKey"],
                                                    [mirror.url("/" + full["path"])]), client_version="1")
        controller = FakeController(config)
        result = await check_and_download_upgrade(controller, "2", installation=Installation(
            "single-file", str(installed), str(installed)), terminal=False)
    assert result.status == "installed" and result.delta, result
    assert installed.read_bytes() == v2 and os.access(installed, os.X_OK)
    assert any("% saved" in m for m in controller.messages())
    assert run_empty_env(installed, "--version", home=home).stdout.startswith("onehop ")
    # the build's own --rollback finds itself (sys.frozen) and puts version 1 back
    done = run_empty_env(installed, "client", "--rollback", "--data-dir", config.data_dir, home=home)
    assert done.returncode == 0, done.stderr
    assert installed.read_bytes() == v1 and (home / "onehop-client.rolledback").read_bytes() == v2


async def test_a_tampered_standalone_is_refused_by_the_upgrade_path(sqlite_cli, tmp_path, build_cache):
    v1, v2 = _builds(sqlite_cli, tmp_path, build_cache)
    (tmp_path / "onehop-client").write_bytes(v2)
    sqlite_cli.ok("client-version", "add", "--version", "2", "--file", tmp_path / "onehop-client")
    site = tmp_path / "site"
    sqlite_cli.ok("publish", "--to", site, "--format", "standalone", "--build-cache", build_cache)
    path = next(p for p in (site).rglob("onehop-client.upgrade") if "delta" not in p.name)
    package = json.loads(gzip.decompress(path.read_bytes()))
    header, _, body = package["data"].partition("\n\n")
    tampered = bytearray(base64.b64decode(body))
    tampered[len(tampered) // 2] ^= 0xFF  # one byte of the executable
    package["data"] = header + "\n\n" + base64.b64encode(bytes(tampered)).decode()
    path.write_bytes(gzip.compress(json.dumps(package).encode()))

    home = tmp_path / "home"
    home.mkdir()
    installed = home / "onehop-client"
    installed.write_bytes(v1)
    async with mirror_of(site) as mirror:
        keys = sqlite_cli.ok("keys", "show")
        config = dataclasses.replace(upgrade_config(home, keys["UpgradeSignaturePublicKey"], [
            mirror.url("/" + str(path.relative_to(site)))]), client_version="1")
        controller = FakeController(config)
        result = await check_and_download_upgrade(controller, "2", installation=Installation(
            "single-file", str(installed), str(installed)), terminal=False)
    assert result.status == "failed" and installed.read_bytes() == v1
    assert not (home / "onehop-client.previous").exists()


def test_a_tampered_standalone_is_refused_by_publish(sqlite_cli, tmp_path, build_cache):
    sqlite_cli.ok("sponsor", "add", "--name", "Acme", "--home-page", "https://acme.example/")
    channel = sqlite_cli.ok("channel", "add", "--name", "Email 1")
    sqlite_cli.ok("campaign", "add", "--channel", channel["id"], "--sponsor", "Acme", "--mechanism", "email",
                  "--email", "get@example.org")
    cache = tmp_path / "cache"
    shutil.copytree(build_cache, cache, ignore=shutil.ignore_patterns("[!r]*"))  # the runtime only
    site = tmp_path / "site"
    first = sqlite_cli.ok("publish", "--to", site, "--format", "standalone", "--build-cache", cache)
    (build,) = [i for i in first if i["kind"] == "client-build"]
    (cached,) = [p for p in cache.glob("*.bin") if hashlib.sha256(p.read_bytes()).hexdigest() == build["sha256"]]

    data = bytearray(cached.read_bytes())
    data[len(data) // 3] ^= 0x01  # one flipped bit in the cached build
    cached.write_bytes(bytes(data))
    assert "tampered" in sqlite_cli.fails("publish", "--to", site, "--format", "standalone", "--build-cache", cache)

    # a build rewritten to carry another server list, its recorded hash updated to match
    files = embedded(bytes(build_bytes := (site / build["path"]).read_bytes()))
    standalone.embed(site / build["path"], {**files, "server_list.dat": b"0000\n"}, cached)
    cached.with_suffix(".sha256").write_text(hashlib.sha256(cached.read_bytes()).hexdigest())
    error = sqlite_cli.fails("publish", "--to", site, "--format", "standalone", "--build-cache", cache)
    assert "server_list.dat" in error and "differ" in error
    assert (site / build["path"]).read_bytes() == build_bytes  # nothing was replaced
