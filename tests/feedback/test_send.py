"""The client half: diagnostics gathered and redacted, the package saved before any upload,
PUT to a real server on loopback, retried until the server answers, kept across restarts."""

from __future__ import annotations

import json
import os
import random
from types import SimpleNamespace

import pytest

from onehop.client.feedback.noticelog import attach_notice_log, read_notice_log
from onehop.client.feedback.queue import FeedbackQueue, pending_dir
from onehop.client.feedback.send import (
    flush_feedback,
    prepare_feedback,
    send_feedback,
    upload_leftovers,
)
from onehop.client.feedback.targets import parse_upload_targets, upload_url
from onehop.client.feedback.upload import UploadPolicy
from onehop.client.notices import Notices
from onehop.core.authpackage import public_key_digest
from onehop.core.feedbackcrypto import decrypt
from onehop.core.upstreamproxy import ProxySpec
from tests.helpers.net import free_port
from tests.e2e.fakes import CountingProxy
from tests.feedback.conftest import UploadServer, client_config

FAST = UploadPolicy(max_attempts=5, backoff=(0.0, 0.0), timeout=5.0)
SERVER_IP = "192.0.2.10"


def client_notices(data_dir: str | None = None) -> Notices:
    notices = Notices(None)
    if data_dir:
        attach_notice_log(notices, data_dir)
    notices.emit("ConnectingServer", diagnosticID="abc123", region="US", protocol="OSSH", candidateNumber=1)
    notices.info("server connection failed", diagnosticID="abc123", protocol="OSSH",
                 error=f"cannot connect to {SERVER_IP}:443 via 203.0.113.5: refused")
    notices.emit("ActiveTunnel", diagnosticID="def456", protocol="OSSH-PREFIX", region="DE")
    notices.info("upstream proxy http://bob:hunter2@198.51.100.3:3128 said no", sessionId="f" * 32)
    return notices


def decrypted(blob: bytes, private_pem: str) -> dict:
    return json.loads(decrypt(blob, private_pem))


async def test_document_has_psiphons_shape_and_is_redacted(tmp_path, feedback_keys):
    private, public = feedback_keys
    config = client_config(tmp_path, public, ["http://127.0.0.1:9/upload"])
    pending = prepare_feedback(config, f"slow via {SERVER_IP}, my address is 198.51.100.77",
                               email="me@example.org", notices=client_notices().recent, keep_ips=[SERVER_IP],
                               extra_stats={"bytesDown": 1234})
    document = decrypted(pending.blob, private)
    assert set(document) == {"Metadata", "DiagnosticInfo", "Feedback"}
    assert document["Metadata"] == {"platform": "linux", "version": 1, "id": pending.upload_id}
    assert document["Feedback"] == {"email": "me@example.org",
                                    "Message": {"text": f"slow via {SERVER_IP}, my address is [ip]"}}
    info = document["DiagnosticInfo"]
    assert info["SystemInformation"]["clientVersion"] == "41"
    assert info["ConnectionStatistics"]["connectionAttempts"] == 1
    assert info["ConnectionStatistics"]["failedConnections"] == 1
    assert info["ConnectionStatistics"]["lastTunnelProtocol"] == "OSSH-PREFIX"
    assert info["ConnectionStatistics"]["bytesDown"] == 1234
    assert info["EstablishmentFailures"][0]["error"] == f"cannot connect to {SERVER_IP}:443 via [ip]: refused"
    text = json.dumps(document)
    for leaked in ("203.0.113.5", "198.51.100.3", "198.51.100.77", "hunter2", "f" * 32):
        assert leaked not in text
    assert pending.key_digest == public_key_digest(public)


async def test_no_diagnostics_sends_the_message_only(tmp_path, feedback_keys):
    private, public = feedback_keys
    config = client_config(tmp_path, public, ["http://127.0.0.1:9/upload"])
    pending = prepare_feedback(config, "hi", include_diagnostics=False, notices=client_notices().recent)
    assert decrypted(pending.blob, private)["DiagnosticInfo"] == {}


async def test_the_notice_log_on_disk_is_redacted_and_feeds_diagnostics(tmp_path, feedback_keys):
    private, public = feedback_keys
    config = client_config(tmp_path, public, ["http://127.0.0.1:9/upload"])
    client_notices(config.data_dir)
    on_disk = open(os.path.join(config.data_dir, "notices.log"), encoding="utf-8").read()
    assert "203.0.113.5" not in on_disk and SERVER_IP not in on_disk and "hunter2" not in on_disk
    assert len(read_notice_log(config.data_dir)) == 4
    pending = prepare_feedback(config, "from the log")  # notices=None: read the log
    history = decrypted(pending.blob, private)["DiagnosticInfo"]["DiagnosticHistory"]
    assert [n["noticeType"] for n in history] == ["ConnectingServer", "Info", "ActiveTunnel", "Info"]


def test_the_notice_log_is_bounded(tmp_path):
    notices = Notices(None)
    attach_notice_log(notices, str(tmp_path), max_bytes=2000)
    for i in range(200):
        notices.info("line", n=i)
    sizes = [os.path.getsize(tmp_path / name) for name in ("notices.log", "notices.log.1")]
    assert all(size <= 2000 for size in sizes)
    assert read_notice_log(str(tmp_path))[-1]["data"]["n"] == 199


def test_upload_url_joins_paths_as_psiphon():
    assert upload_url("https://s3.example/bucket", "", "0123456789abcdef") == \
        "https://s3.example/bucket/0123456789abcdef"
    assert upload_url("https://h/a/?x=1", "/feedback/", "0123456789abcdef") == \
        "https://h/a/feedback/0123456789abcdef?x=1"


def test_targets_take_per_url_keys_and_headers(feedback_keys):
    _, public = feedback_keys
    item = {"URL": "aHR0cDovL2gvdQ==", "OnlyAfterAttempts": 2, "B64EncodedPublicKey": "OTHER",
            "RequestHeaders": {"x-amz-acl": "bucket-owner-full-control"}}
    (target,) = parse_upload_targets([item], public)
    assert (target.url, target.public_key, target.only_after_attempts) == ("http://h/u", "OTHER", 2)
    assert target.headers == (("x-amz-acl", "bucket-owner-full-control"),)


async def test_round_trip_put_to_a_server_written_before_upload(tmp_path, feedback_keys, upload_server):
    private, public = feedback_keys
    config = client_config(tmp_path, public, [upload_server.url("/feedback")])
    seen_pending = []
    upload_server.on_put = lambda path, body: seen_pending.append(os.listdir(pending_dir(config.data_dir)))
    result = await send_feedback(config, "it works", notices=client_notices().recent, policy=FAST)
    assert result.uploaded and result.report.uploaded == (result.upload_id,)
    assert seen_pending == [[f"{result.upload_id}.json"]]          # on disk before the PUT
    assert os.listdir(pending_dir(config.data_dir)) == []           # removed after the 200
    (put,) = [r for r in upload_server.requests if r["method"] == "PUT"]
    assert put["path"] == f"/feedback/{result.upload_id}"
    stored = open(os.path.join(upload_server.upload_dir, "feedback", result.upload_id), "rb").read()
    assert decrypted(stored, private)["Feedback"]["Message"]["text"] == "it works"


async def test_upload_retries_until_the_server_comes_back(tmp_path, feedback_keys):
    private, public = feedback_keys
    port = free_port("127.0.0.1")
    server = UploadServer(str(tmp_path / "uploads"), fail_first=1)
    config = client_config(tmp_path, public, [f"http://127.0.0.1:{port}/up"])
    sleeps = []

    async def sleep(delay):  # the server comes up during the second pause
        sleeps.append(delay)
        if len(sleeps) == 2:
            await server.start(port)

    events = []
    result = await send_feedback(config, "eventually", notices=[],
                                 policy=UploadPolicy(max_attempts=5, backoff=(60.0, 300.0), timeout=5),
                                 sleep=sleep, rng=random.Random(1), on_event=lambda k, d: events.append(k))
    try:
        assert result.uploaded
        assert events == ["failed", "failed", "failed", "uploaded"]  # refused, refused, 503, 200
        assert all(60.0 <= d <= 300.0 for d in sleeps) and len(sleeps) == 3
        paths = {r["path"] for r in server.requests}
        assert paths == {f"/up/{result.upload_id}"}                   # one upload ID for every retry
        assert os.listdir(pending_dir(config.data_dir)) == []
    finally:
        await server.close()


async def test_pending_packages_survive_a_restart(tmp_path, feedback_keys):
    private, public = feedback_keys
    port = free_port("127.0.0.1")
    config = client_config(tmp_path, public, [f"http://127.0.0.1:{port}/up"])
    first = await send_feedback(config, "one", notices=[], policy=UploadPolicy(1, (0, 0), 2.0))
    second = await send_feedback(config, "two", notices=[], policy=UploadPolicy(1, (0, 0), 2.0))
    assert not first.uploaded and not second.uploaded
    assert len(FeedbackQueue(config.data_dir).pending()) == 2
    # A later run of the client (a new process: nothing shared but the data directory).
    server = UploadServer(str(tmp_path / "uploads"))
    await server.start(port)
    try:
        notices = Notices(None)
        controller = SimpleNamespace(config=config, notices=notices, outbound_opener=_direct)
        report = await upload_leftovers(controller, policy=FAST)
        assert sorted(report.uploaded) == sorted([first.upload_id, second.upload_id])
        texts = {decrypted(b, private)["Feedback"]["Message"]["text"] for b in server.files.values()}
        assert texts == {"one", "two"}
        assert FeedbackQueue(config.data_dir).pending() == []
        assert await upload_leftovers(controller, policy=FAST) is None
        assert any(n["data"].get("message") == "feedback upload uploaded" for n in notices.recent)
    finally:
        await server.close()


def _direct():
    from onehop.net.dial import socket_opener
    return socket_opener(None)


async def test_without_a_tunnel_the_upload_goes_through_the_upstream_proxy(tmp_path, feedback_keys,
                                                                          upload_server):
    public = feedback_keys[1]
    proxy = CountingProxy("socks5")
    proxy_port = await proxy.start()
    config = client_config(tmp_path, public, [upload_server.url("/up")],
                           upstream_proxy=ProxySpec("socks5", "127.0.0.1", proxy_port))
    try:
        result = await send_feedback(config, "via proxy", notices=[], policy=FAST)
        assert result.uploaded
        assert ("127.0.0.1", upload_server.port) in proxy.targets
    finally:
        proxy.close()


async def test_a_package_for_another_key_waits_for_a_url_with_that_key(tmp_path, feedback_keys, upload_server):
    _, public = feedback_keys
    config = client_config(tmp_path, public, [upload_server.url("/up")])
    queue = FeedbackQueue(config.data_dir)
    queue.add("00000000000000aa", "digest-of-an-old-key", b'{"iv":""}')
    report = await flush_feedback(config, policy=UploadPolicy(2, (0, 0), 2.0))
    assert report.pending == ("00000000000000aa",) and "no upload URL" in report.errors[0]
    assert upload_server.requests == []


def test_unreadable_pending_files_are_left_alone(tmp_path):
    queue = FeedbackQueue(str(tmp_path))
    os.makedirs(queue.directory)
    open(os.path.join(queue.directory, "garbage.json"), "w").write("{")
    assert queue.pending() == []
    assert os.path.exists(os.path.join(queue.directory, "garbage.json"))


def test_no_upload_url_is_a_config_error(tmp_path, feedback_keys):
    from onehop.errors import ConfigError
    config = client_config(tmp_path, feedback_keys[1], [])
    with pytest.raises(ConfigError, match="FeedbackUploadURLs"):
        prepare_feedback(config, "x")
