"""On ClientUpgradeAvailable with a tunnel up, the upgrade arrives through the tunnel
(real onehop server on loopback), once per offered version."""

from __future__ import annotations

import asyncio

import pytest

from onehop.client.transfer_urls import encode_transfer_url
from onehop.client.upgrade.check import check_and_download_upgrade
from onehop.client.upgrade.fetch import FetchPolicy
from onehop.client.upgrade.install import Installation
from onehop.client.upgrade_hook import UpgradeHook
from onehop.upgrade.artifacts import upgrade_artifacts
from tests.e2e.conftest import make_client, network, notice_log  # noqa: F401  (fixtures)
from tests.helpers.channels import record_channel_opens
from tests.helpers.waiting import wait_until
from tests.e2e.fakes import FileServer
from tests.upgrade.conftest import installed_client

pytestmark = pytest.mark.e2e


async def test_upgrade_through_the_tunnel_on_the_notice(tmp_path, network, make_client, upgrade_keys,  # noqa: F811
                                                        builds):
    private, public = upgrade_keys
    files = FileServer()
    await files.start()
    (full,) = upgrade_artifacts("onehop-client.pyz", builds["42"], "42", private, public)
    files.files["/site/onehop-client.pyz.upgrade"] = full.data
    path = installed_client(tmp_path, builds["41"])
    server = await network.add()
    controller = await make_client(
        [server.entry], client_version="41", upgrade_signature_public_key=public,
        upgrade_download_urls=(encode_transfer_url(files.url("/site/onehop-client.pyz.upgrade")),))
    opened = record_channel_opens(controller)
    runs = []

    async def runner(ctl, version):
        runs.append(version)
        return await check_and_download_upgrade(ctl, version, installation=Installation("single-file", path, "py"),
                                                policy=FetchPolicy(retry_delay=0.0), terminal=False)

    hook = UpgradeHook(controller, runner)
    controller.notices.subscribe(hook.on_notice)
    controller.notices.emit("ClientUpgradeAvailable", version="42")
    controller.notices.emit("ClientUpgradeAvailable", version="42")  # a second tunnel offering it again
    try:
        await wait_until(lambda: "42" in hook.results, 30)
        assert hook.results["42"].status == "installed" and runs == ["42"]
        assert ("127.0.0.1", files.port) in opened
        assert open(path, "rb").read() == builds["42"]
        controller.notices.emit("ClientUpgradeAvailable", version="42")  # done: not again
        await asyncio.sleep(0)
        assert runs == ["42"]
    finally:
        await hook.close()
        await files.close()
