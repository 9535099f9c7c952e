"""The client side on real HTTP servers on loopback: resume after a cut, restart after an
ETag change, reject a tampered package (the old client stays byte-identical), mirrors,
deltas with fallback, the upstream proxy, the pip case."""

from __future__ import annotations

import io
import os
import random
import re

import pytest
from rich.console import Console

from onehop.client.upgrade.check import check_and_download_upgrade, is_newer
from onehop.client.upgrade.fetch import FetchPolicy
from onehop.client.upgrade.install import (
    Installation,
    load_state,
    record_install,
    rollback_client,
)
from onehop.client.upgrade.progress import NoticeProgress, TerminalProgress
from onehop.core.upstreamproxy import ProxySpec
from onehop.net.dial import socket_opener
from onehop.upgrade.artifacts import upgrade_artifacts
from tests.e2e.fakes import CountingProxy, FileServer
from tests.upgrade.conftest import FakeController, installed_client, upgrade_config

FAST = FetchPolicy(max_attempts=4, retry_delay=0.0, timeout=10.0)
FULL = "/site/onehop-client.pyz.upgrade"
DELTA = "/site/onehop-client.pyz.41-42.delta.upgrade"


@pytest.fixture
def published(upgrade_keys, builds):
    private, public = upgrade_keys
    artifacts = upgrade_artifacts("onehop-client.pyz", builds["42"], "42", private, public,
                                  previous=[("41", builds["41"])])
    return {a.kind: a.data for a in artifacts}


def single_file(path: str) -> Installation:
    return Installation("single-file", path, "python3")


def gets(server: FileServer, path: str) -> list[dict]:
    return [r for r in server.requests if r["path"] == path and r["method"] == "GET"]


async def upgrade(controller, installation, version="42", **kw):
    return await check_and_download_upgrade(controller, version, installation=installation,
                                            policy=kw.pop("policy", FAST), terminal=False,
                                            rng=kw.pop("rng", random.Random(0)), **kw)


async def test_a_cut_download_resumes_and_installs(tmp_path, upgrade_keys, builds, published, mirror):
    mirror.files[FULL] = published["full"]
    mirror.cut_after[FULL] = 400_000
    path = installed_client(tmp_path, builds["41"])
    controller = FakeController(upgrade_config(tmp_path, upgrade_keys[1], [mirror.url(FULL)]))
    result = await upgrade(controller, single_file(path))
    assert result.status == "installed" and not result.delta
    first, second = gets(mirror, FULL)
    assert "Range" not in first
    assert second["Range"] == "bytes=400000-" and second["If-Match"] == mirror.etag(FULL)
    assert open(path, "rb").read() == builds["42"]
    assert open(path + ".previous", "rb").read() == builds["41"]
    assert controller.of_type("ClientUpgradeDownloaded")[0]["data"] == {"filename": path, "version": "42"}
    assert os.listdir(os.path.join(controller.config.data_dir, "upgrade")) == ["state.json"]  # no leftovers
    assert load_state(controller.config.data_dir)["installed"]["version"] == "42"


async def test_an_etag_change_mid_download_restarts(tmp_path, upgrade_keys, builds, published, mirror):
    mirror.files[FULL] = published["full"]
    mirror.cut_after[FULL] = 300_000
    path = installed_client(tmp_path, builds["41"])
    controller = FakeController(upgrade_config(tmp_path, upgrade_keys[1], [mirror.url(FULL)]))
    first_etag = mirror.etag(FULL)

    async def republish_during_the_pause(delay):  # the file changes between attempts 1 and 2
        mirror.etag_salt[FULL] = "republished"

    result = await upgrade(controller, single_file(path), sleep=republish_during_the_pause,
                           policy=FetchPolicy(max_attempts=4, retry_delay=1.0, timeout=10.0))
    assert result.status == "installed"
    requests = gets(mirror, FULL)
    assert len(requests) == 3
    assert requests[1]["If-Match"] == first_etag != mirror.etag(FULL)  # 412: the partial file is dropped
    assert "Range" not in requests[2]                                  # and the download starts over
    assert open(path, "rb").read() == builds["42"]


async def test_a_tampered_package_is_rejected_and_the_client_stays(tmp_path, upgrade_keys, builds, published,
                                                                   mirror):
    tampered = bytearray(published["full"])
    tampered[len(tampered) // 2] ^= 0x40
    mirror.files[FULL] = bytes(tampered)
    path = installed_client(tmp_path, builds["41"])
    before = os.stat(path)
    controller = FakeController(upgrade_config(tmp_path, upgrade_keys[1], [mirror.url(FULL)]))
    result = await upgrade(controller, single_file(path))
    assert result.status == "failed" and result.error
    assert open(path, "rb").read() == builds["41"]
    assert os.stat(path).st_ino == before.st_ino and not os.path.exists(path + ".previous")
    assert sorted(os.listdir(os.path.dirname(path))) == ["onehop-client.pyz"]
    assert os.listdir(os.path.join(controller.config.data_dir, "upgrade")) == []  # the bad package is gone
    assert next(n["data"]["message"] for n in controller.of_type("Alert")) == "upgrade package rejected"


async def test_a_package_signed_with_another_key_is_rejected(tmp_path, builds, published, mirror):
    from onehop.core.authpackage import generate_rsa_keypair
    mirror.files[FULL] = published["full"]
    path = installed_client(tmp_path, builds["41"])
    controller = FakeController(upgrade_config(tmp_path, generate_rsa_keypair(2048)[1], [mirror.url(FULL)]))
    result = await upgrade(controller, single_file(path))
    assert result.status == "failed" and "digest" in result.error
    assert open(path, "rb").read() == builds["41"]


async def test_the_delta_is_used_and_the_saving_reported(tmp_path, upgrade_keys, builds, published, mirror):
    mirror.files[FULL] = published["full"]
    mirror.files[DELTA] = published["delta"]
    path = installed_client(tmp_path, builds["41"])
    controller = FakeController(upgrade_config(tmp_path, upgrade_keys[1], [mirror.url(FULL)]))
    result = await upgrade(controller, single_file(path))
    assert result.status == "installed" and result.delta
    assert result.bytes_downloaded == len(published["delta"])
    assert gets(mirror, FULL) == [] and len(gets(mirror, DELTA)) == 1
    assert open(path, "rb").read() == builds["42"]
    saving = [m for m in controller.messages() if m.startswith("delta upgrade to 42")]
    assert saving and "% saved" in saving[0]


@pytest.mark.parametrize("problem", ["absent", "foreign key", "other base", "truncated"])
async def test_any_delta_problem_falls_back_to_the_full_package(tmp_path, upgrade_keys, builds, published,
                                                                mirror, problem):
    from onehop.client.upgrade.package import make_delta_package
    from onehop.core.authpackage import generate_rsa_keypair
    mirror.files[FULL] = published["full"]
    if problem == "foreign key":
        mirror.files[DELTA] = make_delta_package(builds["41"], builds["42"], "41", "42", *generate_rsa_keypair(2048))
    elif problem == "other base":
        mirror.files[DELTA] = make_delta_package(builds["42"], builds["42"] + b"x", "41", "42", *upgrade_keys)
    elif problem == "truncated":
        mirror.files[DELTA] = published["delta"][:-50]
    path = installed_client(tmp_path, builds["41"])
    controller = FakeController(upgrade_config(tmp_path, upgrade_keys[1], [mirror.url(FULL)]))
    result = await upgrade(controller, single_file(path))
    assert result.status == "installed" and not result.delta
    assert open(path, "rb").read() == builds["42"]
    assert "delta upgrade not usable, fetching the full package" in controller.messages()
    assert len(gets(mirror, DELTA)) == 1  # a 404 is final; a bad package is not fetched twice


async def test_mirrors_are_tried_after_their_attempt_count(tmp_path, upgrade_keys, builds, published, mirror):
    from onehop.client.transfer_urls import encode_transfer_url
    mirror.files["/mirror/onehop-client.pyz.upgrade"] = published["full"]
    dead = "http://127.0.0.1:9/site/onehop-client.pyz.upgrade"
    urls = [encode_transfer_url(dead), encode_transfer_url(mirror.url("/mirror/onehop-client.pyz.upgrade"), 1, True)]
    path = installed_client(tmp_path, builds["41"])
    controller = FakeController(upgrade_config(tmp_path, upgrade_keys[1], urls))
    result = await upgrade(controller, Installation("pip", None, "python3"),
                           policy=FetchPolicy(max_attempts=8, retry_delay=0.0, timeout=5.0))
    assert result.status == "downloaded"
    assert open(result.path, "rb").read() == builds["42"]
    assert result.command == f"python3 {result.path} client"
    assert open(path, "rb").read() == builds["41"]  # a pip-installed onehop is never replaced
    assert any("pip install --upgrade onehop" in m for m in controller.messages())


async def test_without_a_tunnel_the_download_uses_the_upstream_proxy(tmp_path, upgrade_keys, builds, published,
                                                                     mirror):
    mirror.files[FULL] = published["full"]
    proxy = CountingProxy("http")
    port = await proxy.start()
    spec = ProxySpec("http", "127.0.0.1", port)
    path = installed_client(tmp_path, builds["41"])
    config = upgrade_config(tmp_path, upgrade_keys[1], [mirror.url(FULL)], upstream_proxy=spec)
    try:
        result = await upgrade(FakeController(config, socket_opener(spec)), single_file(path))
        assert result.status == "installed"
        assert ("127.0.0.1", mirror.port) in proxy.targets and proxy.bytes_relayed > len(published["delta"])
    finally:
        proxy.close()


async def test_nothing_to_do(tmp_path, upgrade_keys, builds):
    path = installed_client(tmp_path, builds["41"])
    config = upgrade_config(tmp_path, upgrade_keys[1], ["http://127.0.0.1:9/x.upgrade"])
    assert (await upgrade(FakeController(config), single_file(path), "41")).status == "current"
    assert (await upgrade(FakeController(config), single_file(path), "7")).status == "current"
    disabled = upgrade_config(tmp_path, "", ["http://127.0.0.1:9/x.upgrade"])
    assert (await upgrade(FakeController(disabled), single_file(path))).status == "disabled"
    record_install(config.data_dir, "42", "41", path)
    open(path + ".previous", "wb").write(builds["41"])
    rollback_client(config.data_dir, single_file(path))
    assert (await upgrade(FakeController(config), single_file(path))).status == "skipped"
    assert (await upgrade(FakeController(config), single_file(path), "43")).status == "failed"  # 43 is offered
    assert is_newer("10", "9") and not is_newer("9", "10")


async def test_a_dead_mirror_fails_cleanly_and_keeps_nothing_in_place(tmp_path, upgrade_keys, builds):
    path = installed_client(tmp_path, builds["41"])
    controller = FakeController(upgrade_config(tmp_path, upgrade_keys[1], ["http://127.0.0.1:9/x.upgrade"]))
    sleeps = []

    async def sleep(delay):
        sleeps.append(delay)

    result = await upgrade(controller, single_file(path), policy=FetchPolicy(max_attempts=3, retry_delay=30.0),
                           sleep=sleep)
    assert result.status == "failed" and "127.0.0.1:9" in result.error
    assert sleeps == [30.0] + [30.0, 30.0]  # the delta's 2 attempts, then the full package's 3
    assert open(path, "rb").read() == builds["41"]


def test_progress_on_a_terminal_and_as_notices():
    from onehop.client.notices import Notices
    notices = Notices(None)
    output = io.StringIO()
    bar = TerminalProgress(notices, console=Console(file=output, force_terminal=True, width=100))
    bar.start("onehop-client.pyz.upgrade.42", 1000)
    bar.update(500)
    bar.finish()
    bar.note("delta upgrade to 42: downloaded 1 KiB instead of 9 MiB (99.9% saved)")
    assert "(99.9% saved)" in re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", output.getvalue())
    plain = NoticeProgress(notices)
    plain.start("f", 1000)
    for done in range(0, 1001, 100):
        plain.update(done)
    progress = [n for n in notices.recent if n["data"].get("message") == "upgrade download progress"]
    assert [n["data"]["bytes"] for n in progress] == [300, 500, 800, 1000]  # each quarter once


async def test_the_out_of_band_version_probe(tmp_path, upgrade_keys, published, mirror):
    from dataclasses import replace

    from onehop.client.upgrade.check import probe_available_version
    mirror.files[FULL] = published["full"]
    config = upgrade_config(tmp_path, upgrade_keys[1], [mirror.url(FULL)])
    assert await probe_available_version(config, socket_opener(None)) is None  # header not configured
    configured = replace(config, extra={"UpgradeDownloadClientVersionHeader": "ETag"})
    assert await probe_available_version(configured, socket_opener(None)) == mirror.etag(FULL)
    assert [r["method"] for r in mirror.requests] == ["HEAD"]


async def test_a_bad_url_list_is_a_failed_upgrade_not_an_exception(tmp_path, upgrade_keys, builds):
    path = installed_client(tmp_path, builds["41"])
    controller = FakeController(upgrade_config(tmp_path, upgrade_keys[1], [{"URL": "not base64!"}]))
    result = await upgrade(controller, single_file(path))
    assert result.status == "failed" and "UpgradeDownloadURLs[0]" in result.error
    assert controller.of_type("Alert")
