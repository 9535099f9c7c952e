"""``client-version add --file``: signed upgrade packages (and a delta when smaller) made
with the network's upgrade key and stored; servers of a new export offer the version;
``publish`` uploads the packages; the client's downloader verifies and installs them."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from onehop.client.config import ClientConfig
from onehop.client.dialer import dial
from onehop.client.transfer_urls import encode_transfer_url
from onehop.client.upgrade.check import check_and_download_upgrade
from onehop.client.upgrade.fetch import FetchPolicy
from onehop.client.upgrade.install import Installation
from onehop.client.upgrade.package import read_upgrade_package
from onehop.core.serverentry import decode_server_entry
from tests.helpers.net import free_port
from onehop.net.dial import socket_opener
from onehop.server.config import load_server_config
from onehop.server.service import TunnelServer
from tests.e2e.fakes import FileServer
from tests.network.test_lists_publish import bucket, moto_endpoint  # noqa: F401  (fixtures)
from tests.upgrade.conftest import FakeController, installed_client, make_build

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def builds() -> dict[str, bytes]:
    return {"1": make_build("1"), "2": make_build("2")}


def add_versions(cli, tmp_path, builds) -> tuple[dict, dict]:
    for version, data in builds.items():
        (tmp_path / f"onehop-client-{version}.pyz").write_bytes(data)
    first = cli.ok("client-version", "add", "--platform", "Other", "--file", tmp_path / "onehop-client-1.pyz",
                   "--name", "onehop-client.pyz", "--description", "first")
    second = cli.ok("client-version", "add", "--platform", "Other", "--file", tmp_path / "onehop-client-2.pyz",
                    "--name", "onehop-client.pyz")
    return first, second


def test_add_makes_signed_packages_and_a_smaller_delta(cli, tmp_path, builds):
    first, second = add_versions(cli, tmp_path, builds)
    public = cli.ok("keys", "show")["UpgradeSignaturePublicKey"]
    assert first["version"] == 1 and [p["kind"] for p in first["upgrade_packages"]] == ["full"]
    assert second["version"] == 2 and second["build"]["site_id"] == first["build"]["site_id"]
    full, delta = second["upgrade_packages"]
    assert full["name"] == "onehop-client.pyz.upgrade" and full["path"].startswith(first["build"]["site_id"] + "/")
    assert delta["name"] == "onehop-client.pyz.1-2.delta.upgrade" and delta["from_version"] == "1"
    assert delta["size"] < full["size"] / 5 and delta["saving"] > 0.8
    listed = {v["version"]: v for v in cli.ok("client-version", "list")}
    assert listed[2]["build"]["name"] == "onehop-client.pyz" and listed[2]["build"]["size"] == len(builds["2"])
    err = cli.fails("client-version", "add", "--platform", "Other", "--version", "2", "--file",
                    tmp_path / "onehop-client-2.pyz")
    assert "already at version 2" in err
    assert "--file" in cli.fails("client-version", "add", "--file", tmp_path / "missing.pyz", rc=2)
    assert "--name" in cli.fails("client-version", "add", "--name", "x", rc=2)
    # the full package holds the build, signed with the network's upgrade key
    manifest = cli.ok("publish", "--to", tmp_path / "site")
    upgrades = {i["path"]: i for i in manifest if i["kind"] == "client-upgrade"}
    assert set(upgrades) == {full["path"], delta["path"]} and upgrades[full["path"]]["channel"] is None
    blob = (tmp_path / "site" / full["path"]).read_bytes()
    signed = read_upgrade_package(blob, public)
    assert (signed.version, signed.platform, signed.build) == ("2", "Other", builds["2"])
    assert json.loads(gzip.decompress(blob))["signingPublicKeyDigest"]
    actions = [a["action"] for a in cli.ok("audit")]
    assert actions.count("client-version.build") == 2


async def test_servers_offer_it_and_clients_install_the_published_package(sqlite_cli, tmp_path, builds):
    cli = sqlite_cli
    add_versions(cli, tmp_path, builds)
    cli.ok("channel", "add", "--name", "c1")
    cli.ok("host", "add", "--name", "lo", "--ip", "127.0.0.1", "--region", "CA", "--ssh-port", free_port("127.0.0.1"))
    ip = "127.0.0.71"
    server = cli.ok("server", "add", "--host", "lo", "--channel", "c1", "--ip", ip, "--ossh-port", free_port(ip),
                    "--allow-bogons")
    cli.ok("export", "--out", tmp_path / "export")
    psinet = json.loads((tmp_path / "export" / "psinet.json").read_text())
    assert psinet["client_versions"]["Other"] == [{"version": "1"}, {"version": "2"}]
    running = TunnelServer(load_server_config(tmp_path / "export" / server["id"] / "server.json"))
    await running.start()
    try:
        entry = decode_server_entry((tmp_path / "export" / server["id"] / "server-entry.dat").read_text().strip())
        for version, offered in (("1", "2"), ("2", "")):
            config = ClientConfig(data_dir=str(tmp_path / "dial"), client_version=version)
            tunnel = await dial(entry, "OSSH", config, os.urandom(16).hex(), socket_opener(None))
            tunnel.client.close()
            assert tunnel.handshake.upgrade_client_version == offered
    finally:
        await running.stop()

    files = FileServer()
    await files.start()
    try:
        base = files.url("/web")
        manifest = cli.ok("publish", "--to", tmp_path / "site", "--base-url", base)
        full = next(i for i in manifest if i["kind"] == "client-upgrade" and i["path"].endswith(".pyz.upgrade"))
        for root, _, names in os.walk(tmp_path / "site"):
            for name in names:
                path = os.path.join(root, name)
                files.files["/web/" + os.path.relpath(path, tmp_path / "site")] = open(path, "rb").read()
        public = cli.ok("keys", "show")["UpgradeSignaturePublicKey"]
        config = ClientConfig(data_dir=str(tmp_path / "data"), client_version="1", upgrade_signature_public_key=public,
                              upgrade_download_urls=(encode_transfer_url(full["url"]),))
        single = installed_client(tmp_path, builds["1"])
        result = await check_and_download_upgrade(FakeController(config), "2", terminal=False,
                                                  installation=Installation("single-file", single, "py"),
                                                  policy=FetchPolicy(retry_delay=0.0))
        assert result.status == "installed" and result.delta  # the delta from version 1 was used
        assert open(single, "rb").read() == builds["2"]
        pip = await check_and_download_upgrade(FakeController(config), "2", terminal=False,
                                               installation=Installation("pip", None, "python3"),
                                               policy=FetchPolicy(retry_delay=0.0))
        assert pip.status == "downloaded" and not pip.delta  # the full package, verified
        assert open(pip.path, "rb").read() == builds["2"]
    finally:
        await files.close()


def test_s3_objects_carry_the_client_version(sqlite_cli, tmp_path, builds, bucket, moto_endpoint):  # noqa: F811
    client, name = bucket
    add_versions(sqlite_cli, tmp_path, builds)
    manifest = sqlite_cli.ok("publish", "--to", f"s3://{name}/web", "--s3-endpoint", moto_endpoint)
    full = next(i for i in manifest if i["kind"] == "client-upgrade" and i["path"].endswith(".pyz.upgrade"))
    head = client.head_object(Bucket=name, Key=f"web/{full['path']}")
    assert head["Metadata"]["psiphon-client-version"] == "2"
    again = sqlite_cli.ok("publish", "--to", f"s3://{name}/web", "--s3-endpoint", moto_endpoint)
    assert not any(i["changed"] for i in again if i["kind"] == "client-upgrade")
