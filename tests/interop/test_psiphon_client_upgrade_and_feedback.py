"""Psiphon's console client against a onehop network: client upgrades and feedback.

One network database (``onehop network``) is built for the module: a sponsor, a channel, a
host on 127.0.0.1 with one OSSH server (``--allow-bogons``: the test's web server is on
loopback), and a client version of platform ``Other`` with a build. Psiphon's client sends
``ClientPlatform`` ``Linux_interop``, which psiphond and onehop both normalise to ``Other``.

* upgrade: the exported server offers the version in the handshake, Psiphon's client
  downloads the package ``network publish`` wrote, from a web server on loopback; and,
  with no server at all, it finds the version with a HEAD and downloads it out of band;
* feedback: ``psiphon-tunnel-core -feedbackUpload`` encrypts a document under the
  network's ``FeedbackEncryptionPublicKey`` and PUTs it; ``onehop feedback collect``
  decrypts it into the network database and ``onehop feedback list`` shows it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from onehop.network.publish import VERSION_METADATA
from onehop.client.upgrade.package import read_upgrade_package

from tests.helpers.net import free_port

from .harness import ONEHOP, PSIPHON_CLIENT, PsiphonClient, WebServer, _Handler, wait_for_port

UPGRADE_VERSION = 7
# The header S3 sends for the object metadata ``network publish`` sets on the full package
# (x-amz-meta-psiphon-client-version); a directory publish has no metadata, so the web
# server below sends it as an S3 bucket would.
VERSION_HEADER = "x-amz-meta-" + VERSION_METADATA


def onehop(*args: str, timeout: float = 120) -> str:
    done = subprocess.run([*ONEHOP, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"onehop {' '.join(map(str, args))}: {done.stderr[-2000:]}"
    return done.stdout


def onehop_json(*args: str, timeout: float = 120):
    return json.loads(onehop(*args, "--json", timeout=timeout))


def transfer_url(url: str, **extra) -> dict:
    """One entry of Psiphon's TransferURLs (``URL`` is the base64 of the address)."""
    return {"URL": base64.b64encode(url.encode()).decode(), "OnlyAfterAttempts": 0, **extra}


class _HeaderHandler(_Handler):
    """The harness's handler, plus per-path response headers (``server.extra_headers``) and
    a HEAD that sends no body (as S3's: Psiphon's client checks the version with one)."""

    def send_response(self, code, message=None):
        super().send_response(code, message)
        for name, value in self.server.extra_headers.get(self.path.split("?", 1)[0], {}).items():
            self.send_header(name, value)

    def do_HEAD(self) -> None:
        self.server.requests.append((self.command, self.path, dict(self.headers)))
        body = self.server.files.get(self.path.split("?", 1)[0])
        self.send_response(404 if body is None else 200)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()


class HeaderWebServer(WebServer):
    """WebServer whose files may carry extra response headers: ``headers[path] = {name: value}``."""

    def __init__(self, files: dict[str, bytes], headers: dict[str, dict[str, str]]) -> None:
        super().__init__(files)
        self.httpd.extra_headers = headers  # type: ignore[attr-defined]
        self.httpd.RequestHandlerClass = _HeaderHandler


class Network:
    """A onehop network database on loopback, exported and published under ``root``."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.db = f"sqlite:///{root / 'network.db'}"
        net = ("network", "--db", self.db)
        onehop_json(*net, "init", timeout=300)
        self.sponsor = onehop_json(*net, "sponsor", "add", "--name", "Interop",
                                   "--home-page", "https://interop.example/")["id"]
        self.channel = onehop_json(*net, "channel", "add", "--name", "interop")["id"]
        onehop_json(*net, "host", "add", "--name", "lo1", "--ip", "127.0.0.1", "--region", "US")
        self.ossh_port = free_port()
        self.server_id = onehop_json(*net, "server", "add", "--host", "lo1", "--channel", self.channel,
                                     "--ossh-port", str(self.ossh_port), "--allow-bogons")["id"]
        self.build = os.urandom(50_000)
        (root / "onehop-linux.bin").write_bytes(self.build)
        version = onehop_json(*net, "client-version", "add", "--platform", "Other",
                              "--version", str(UPGRADE_VERSION), "--file", root / "onehop-linux.bin")
        assert version["version"] == UPGRADE_VERSION
        self.keys = onehop_json(*net, "keys", "show")
        # Publish before export, as docs/operator-network.md asks.
        self.manifest = onehop_json(*net, "publish", "--to", root / "published")
        onehop_json(*net, "export", "--out", root / "export")
        self.server_dir = root / "export" / self.server_id
        self.entry = (self.server_dir / "server-entry.dat").read_text().strip()

    def published(self) -> dict[str, bytes]:
        """Every published file as the web server's ``path -> bytes``."""
        base = self.root / "published"
        return {"/" + str(p.relative_to(base)): p.read_bytes() for p in base.rglob("*") if p.is_file()}

    def upgrade_path(self) -> str:
        [item] = [i for i in self.manifest if i["kind"] == "client-upgrade"]
        return "/" + item["path"]


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Network:
    return Network(tmp_path_factory.mktemp("network"))


def test_psiphon_client_downloads_the_upgrade_a_onehop_network_published(network, tmp_path, procs):
    server = procs.start([*ONEHOP, "server", "run", "--config", network.server_dir / "server.json"],
                         tmp_path / "server.log")
    wait_for_port(network.ossh_port)
    path = network.upgrade_path()
    files = network.published()
    web = HeaderWebServer(files, {path: {VERSION_HEADER: str(UPGRADE_VERSION)}})
    common = {"PropagationChannelId": network.channel, "SponsorId": network.sponsor,
              "LimitTunnelProtocols": ["OSSH"], "TargetServerEntry": network.entry,
              "EnableUpgradeDownload": True, "UpgradeDownloadURLs": [transfer_url(web.url(path))],
              "UpgradeDownloadClientVersionHeader": VERSION_HEADER}
    try:
        client = PsiphonClient(procs, tmp_path / "old", {**common, "ClientVersion": "1"})
        # Not offered: a client already at the version, and one of another platform class
        # (psiphond's and onehop's normalisation: "Windows..." is Windows, not Other).
        current = PsiphonClient(procs, tmp_path / "current",
                                {**common, "ClientVersion": str(UPGRADE_VERSION)})
        windows = PsiphonClient(procs, tmp_path / "windows", {**common, "ClientVersion": "1",
                                                               "ClientPlatform": "Windows_interop"})
        client.wait_tunnel(timeout=60)
        available = client.wait_notice("ClientUpgradeAvailable")
        assert available["data"]["version"] == str(UPGRADE_VERSION)
        downloaded = client.wait_notice("ClientUpgradeDownloaded", timeout=60)
        for other in (current, windows):
            other.wait_tunnel(timeout=60)  # the handshake, and its notices, came before
            assert other.notices("ClientUpgradeAvailable") == []
    finally:
        web.close()
    # Psiphon's client does not open the package: it writes the downloaded bytes as they are
    # (the authenticated, gzip-compressed package) to <data root>/<psiphon dir>/upgrade and
    # leaves verification to the outer app (the config key UpgradeDownloadFilename is only a
    # legacy location it migrates from; the notice names the file it wrote). So the file
    # equals the published package, and that package opens, with the network's upgrade key,
    # to the build.
    written = Path(downloaded["data"]["filename"]).read_bytes()
    assert written == files[path]
    assert read_upgrade_package(written, network.keys["UpgradeSignaturePublicKey"]).build == network.build
    assert any(r[0] == "GET" and r[1] == path for r in web.requests)
    assert server.alive()


def test_psiphon_feedback_upload_is_collected_into_the_onehop_network(network, tmp_path):
    web = WebServer()
    try:
        data_root = tmp_path / "cli" / "data"
        data_root.mkdir(parents=True)
        config = {
            "PropagationChannelId": network.channel, "SponsorId": network.sponsor,
            "ClientPlatform": "Linux_interop", "ClientVersion": "1", "DataRootDirectory": str(data_root),
            "DisableTactics": True, "EmitDiagnosticNotices": True,
            "EnableFeedbackUpload": True,
            "FeedbackUploadURLs": [transfer_url(web.url("/feedback"),
                                                RequestHeaders={"X-Interop": "feedback"})],
            "FeedbackEncryptionPublicKey": network.keys["FeedbackEncryptionPublicKey"],
        }
        config_path = tmp_path / "client.json"
        config_path.write_text(json.dumps(config))
        feedback_id = os.urandom(8).hex()
        document = {
            "Metadata": {"platform": "android", "version": 4, "id": feedback_id},
            "DiagnosticInfo": {
                "SystemInformation": {"PsiphonInfo": {"PROPAGATION_CHANNEL_ID": network.channel,
                                                      "SPONSOR_ID": network.sponsor,
                                                      "CLIENT_VERSION": "1"}},
                "DiagnosticHistory": [{"msg": "ServerResponseCheck", "data": {"ipAddress": "127.0.0.1"}}],
            },
            "Feedback": {"email": "user@interop.example", "Message": {"text": "upgrade worked"}},
        }
        done = subprocess.run([str(PSIPHON_CLIENT), "-config", str(config_path), "-feedbackUpload",
                               "-feedbackUploadPath", "uploads"],
                              input=json.dumps(document).encode(), capture_output=True, timeout=120,
                              cwd=tmp_path)
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
        assert b"FeedbackUpload: upload succeeded" in done.stdout + done.stderr
        [(upload_path, blob)] = web.uploads.items()
        [request] = [r for r in web.requests if r[0] == "PUT"]
    finally:
        web.close()
    assert upload_path.startswith("/feedback/uploads/")
    assert request[2].get("X-Interop") == "feedback"
    assert set(json.loads(blob)) == {"iv", "contentCiphertext", "wrappedEncryptionKey",
                                     "contentMac", "wrappedMacKey"}

    inbox = tmp_path / "inbox"
    (inbox / Path(upload_path).parent.relative_to("/")).mkdir(parents=True)
    (inbox / upload_path.lstrip("/")).write_bytes(blob)
    report = onehop_json("feedback", "collect", "--db", network.db, "--from", inbox)
    assert len(report["stored"]) == 1 and not report["rejected"], report
    assert not (inbox / upload_path.lstrip("/")).exists(), "collect deletes what it stored"

    records = onehop_json("feedback", "list", "--db", network.db)
    [record] = [r for r in records if r.get("feedback_id") == feedback_id]
    summary = (record["platform"], record["format_version"], record["client_version"])
    assert summary == ("android", "4", "1")  # the version from PsiphonInfo.CLIENT_VERSION
    assert (record["message"], record["email"]) == ("upgrade worked", "user@interop.example")
    info = record["document"]["DiagnosticInfo"]
    assert info["SystemInformation"]["PsiphonInfo"]["PROPAGATION_CHANNEL_ID"] == network.channel
    # the server's address became its ID, from the network database
    assert record["server_ids"] == [network.server_id]
    assert info["DiagnosticHistory"][0]["data"]["ipAddress"] == f"[server:{network.server_id}]"


@pytest.mark.parametrize("advertised", [UPGRADE_VERSION, 1])
def test_psiphon_client_checks_for_the_upgrade_out_of_band(network, tmp_path, procs, advertised):
    """With no server to connect to, Psiphon's client looks for an upgrade by itself: a HEAD
    for the version header (what S3 returns for the metadata publish sets), then the package
    only when that version is newer than its own."""
    path = network.upgrade_path()
    files = network.published()
    web = HeaderWebServer(files, {path: {VERSION_HEADER: str(advertised)}})
    try:
        client = PsiphonClient(procs, tmp_path / "cli", {
            "PropagationChannelId": network.channel, "SponsorId": network.sponsor, "ClientVersion": "1",
            "LimitTunnelProtocols": ["OSSH"], "EnableUpgradeDownload": True,
            "UpgradeDownloadURLs": [transfer_url(web.url(path))],
            "UpgradeDownloadClientVersionHeader": VERSION_HEADER})
        if advertised > 1:
            downloaded = client.wait_notice("ClientUpgradeDownloaded", timeout=60)
            assert Path(downloaded["data"]["filename"]).read_bytes() == files[path]
        else:
            latest = client.wait_notice("ClientIsLatestVersion", timeout=60)
            assert latest["data"]["availableVersion"] == "1"
        methods = [r[0] for r in web.requests if r[1] == path]
    finally:
        web.close()
    assert methods[0] == "HEAD"
    assert ("GET" in methods) == (advertised > 1)
    assert client.notices("ClientUpgradeAvailable") == []  # no handshake was made
