"""Server lists (embedded, remote, discovery pool) and ``publish`` to a directory and
to S3 (moto's server on loopback)."""

from __future__ import annotations

import json
import os
import uuid
import zlib

import boto3
import pytest
from botocore.config import Config

from onehop.core.authpackage import make_package, read_package
from onehop.core.serverentry import decode_server_list, verify_server_entry_signature
from onehop.network.keys import KeyPair
from onehop.network.lists import remote_list_package
from onehop.network.signing import PackageSigner
from tests.conftest import vector_cases
from tests.helpers.net import free_port
from tests.network.conftest import small_network


def remote_list_of(manifest: list[dict], channel_id: str) -> dict:
    (item,) = [i for i in manifest if i["kind"] == "remote-server-list" and i["channel"] == channel_id]
    return item


@pytest.mark.parametrize("case", vector_cases("auth_package", go_result="ok"), ids=lambda c: c["name"])
def test_remote_list_package_matches_psiphon_vectors(case):
    signer = PackageSigner(KeyPair(case["private_key_pem_pkcs1"], case["public_key_b64_der"]))
    package = remote_list_package(case["data"].split("\n"), signer)
    assert zlib.decompress(package) == case["package_json"].encode("utf-8")
    assert zlib.decompress(bytes.fromhex(case["package_zlib"])) == zlib.decompress(package)
    # the same bytes as the core's make_package (which loads the key on every call)
    assert signer.sign(case["data"]) == make_package(case["data"], case["private_key_pem_pkcs1"],
                                                     case["public_key_b64_der"])


def test_publish_to_a_directory(cli, tmp_path):
    net = small_network(cli)
    cli.ok("channel", "add", "--name", "empty")
    out = tmp_path / "site"
    manifest = cli.ok("publish", "--to", out, "--no-builds", "--base-url", "https://s3.amazonaws.com/b/web")
    site = net["channel"]["site_id"]
    item = remote_list_of(manifest, net["channel"]["id"])
    assert item["path"] == f"{site}/server_list_compressed"
    assert item["url"] == f"https://s3.amazonaws.com/b/web/{site}/server_list_compressed"
    assert {i["kind"] for i in manifest} == {"remote-server-list", "embedded-server-list"}
    assert len(manifest) == 4 and all(i["changed"] for i in manifest)
    keys = cli.ok("keys", "show")
    data = read_package((out / item["path"]).read_bytes(), keys["RemoteServerListSignaturePublicKey"])
    entries, errors = decode_server_list(data)
    assert errors == [] and [e.ip_address for e in entries] == ["198.51.100.2", "198.51.100.3"]
    for entry in entries:
        verify_server_entry_signature(entry, keys["ServerEntrySignaturePublicKey"])
    embedded = (out / site / "embedded_server_list").read_text().split()
    assert embedded == data.split("\n")
    mtimes = {p: os.stat(out / i["path"]).st_mtime_ns for i in manifest for p in [i["path"]]}
    again = cli.ok("publish", "--to", out, "--no-builds", "--base-url", "https://s3.amazonaws.com/b/web")
    assert not any(i["changed"] for i in again)
    assert mtimes == {i["path"]: os.stat(out / i["path"]).st_mtime_ns for i in again}
    assert cli.ok("audit")[0]["action"] == "publish"


def test_embedded_lists_sample_permanent_servers_of_other_channels(cli, tmp_path):
    small_network(cli)
    other = cli.ok("channel", "add", "--name", "other")
    cli.ok("host", "add", "--name", "ams1", "--ip", "192.0.2.1", "--region", "NL")
    for n in range(2, 6):
        cli.ok("server", "add", "--host", "ams1", "--channel", "other", "--ip", f"192.0.2.{n}", "--permanent")
    cli.ok("settings", "set", "permanent-sample-size", "2")
    first = cli.ok("publish", "--to", tmp_path / "a", "--no-builds")
    keys = cli.ok("keys", "show")

    def ips(manifest, channel_id, root):
        item = remote_list_of(manifest, channel_id)
        data = read_package((root / item["path"]).read_bytes(), keys["RemoteServerListSignaturePublicKey"])
        return [e.ip_address for e in decode_server_list(data)[0]]
    channel_id = next(c["id"] for c in cli.ok("channel", "list") if c["name"] == "email-1")
    own_list = ips(first, channel_id, tmp_path / "a")
    assert own_list[:2] == ["198.51.100.2", "198.51.100.3"] and len(own_list) == 4
    assert set(own_list[2:]) < {f"192.0.2.{n}" for n in range(2, 6)}
    assert ips(first, other["id"], tmp_path / "a") == [f"192.0.2.{n}" for n in range(2, 6)]
    second = cli.ok("publish", "--to", tmp_path / "b", "--no-builds")
    assert ips(second, channel_id, tmp_path / "b") == own_list  # the sample is stable


# -- S3 -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(moto_endpoint, monkeypatch):
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    client = boto3.client("s3", endpoint_url=moto_endpoint, config=Config(s3={"addressing_style": "path"}))
    name = f"onehop-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=name)
    return client, name


def test_publish_to_s3_path_style_and_skips_unchanged(sqlite_cli, bucket, moto_endpoint):
    client, name = bucket
    net = small_network(sqlite_cli)
    manifest = sqlite_cli.ok("publish", "--to", f"s3://{name}/web", "--s3-endpoint", moto_endpoint, "--no-builds")
    item = remote_list_of(manifest, net["channel"]["id"])
    assert item["url"] == f"{moto_endpoint}/{name}/web/{item['path']}"  # path-style: the bucket is in the path
    body = client.get_object(Bucket=name, Key=f"web/{item['path']}")["Body"].read()
    keys = sqlite_cli.ok("keys", "show")
    entries, _ = decode_server_list(read_package(body, keys["RemoteServerListSignaturePublicKey"]))
    assert len(entries) == 2
    again = sqlite_cli.ok("publish", "--to", f"s3://{name}/web", "--s3-endpoint", moto_endpoint, "--no-builds")
    assert [i["changed"] for i in again] == [False, False]
    sqlite_cli.ok("server", "add", "--host", "fra1", "--channel", "email-1", "--ip", "198.51.100.9")
    third = sqlite_cli.ok("publish", "--to", f"s3://{name}/web", "--s3-endpoint", moto_endpoint, "--no-builds")
    assert [i["changed"] for i in third] == [True, True]


def test_unreachable_s3_endpoint_writes_nothing(sqlite_cli, bucket):
    small_network(sqlite_cli)
    endpoint = f"http://127.0.0.1:{free_port()}"
    err = sqlite_cli.fails("publish", "--to", "s3://bucket/web", "--s3-endpoint", endpoint, "--no-builds")
    assert "cannot reach the S3 endpoint" in err and "nothing was published" in err and "Traceback" not in err
    assert sqlite_cli.ok("audit")[0]["action"] != "publish"


def test_missing_bucket_is_a_clear_error(sqlite_cli, bucket, moto_endpoint):
    small_network(sqlite_cli)
    err = sqlite_cli.fails("publish", "--to", "s3://no-such-bucket/web", "--s3-endpoint", moto_endpoint,
                           "--no-builds")
    assert "S3 refused" in err and "404" in err


@pytest.mark.parametrize("target", ["s3://", "s3://UPPER/x", "s3://ok-bucket/../x", "https://example.com/x"])
def test_bad_targets(sqlite_cli, target):
    assert "--to" in sqlite_cli.fails("publish", "--to", target, "--no-builds", rc=2)


def test_publish_manifest_json_shape(sqlite_cli, tmp_path):
    small_network(sqlite_cli)
    manifest = json.loads(sqlite_cli.run("publish", "--to", tmp_path / "o", "--no-builds", "--json").out)
    assert isinstance(manifest, list)
    for item in manifest:
        assert {"kind", "channel", "path", "url"} <= set(item)
        assert item["url"].startswith("file://")
