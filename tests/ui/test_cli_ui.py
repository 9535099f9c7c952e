"""``onehop client --ui`` as a person starts it: one line with the address, the token
required, the state connected, settings written to --config FILE."""

from __future__ import annotations

import asyncio
import json
import re
import sys

import aiohttp
import pytest

from onehop.core.serverentry import encode_server_entry_fields
from tests.e2e.conftest import network  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e


async def test_client_ui_from_the_command_line(network, tmp_path):  # noqa: F811
    server = await network.add(region="US")
    config = tmp_path / "client.json"
    config.write_text(json.dumps({"DataRootDirectory": str(tmp_path / "data"), "LocalSocksProxyPort": 0,
                                  "LocalHttpProxyPort": 0}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "onehop.cli", "client", "--ui", "--no-browser", "--config", str(config),
        "--target-server-entry", encode_server_entry_fields(server.entry),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        url = re.fullmatch(r"onehop UI: (http://127\.0\.0\.1:\d+)/#token=(\S+)\n", line)
        assert url, line
        origin, token = url[1], url[2]
        async with aiohttp.ClientSession() as session:
            async with session.get(origin + "/api/status") as r:
                assert r.status == 403
            for _ in range(200):
                async with session.get(origin + "/api/status", headers={"X-Onehop-Token": token}) as r:
                    status = await r.json()
                if status["state"] == "connected":
                    break
                await asyncio.sleep(0.1)
            assert status["state"] == "connected" and status["server_region"] == "US"
            async with session.post(origin + "/api/settings", json={"protocols": ["SSH", "OSSH"]},
                                    headers={"X-Onehop-Token": token}) as r:
                assert r.status == 200
        saved = json.loads(config.read_text())
        assert saved["LimitTunnelProtocols"] == ["SSH", "OSSH"] and saved["LocalSocksProxyPort"] == 0
        notices = []
        proc.terminate()
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        notices = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
        assert any(n["noticeType"] == "ListeningWebUIPort" for n in notices)
        assert token not in out.decode()  # never in a notice (the notice log is sent as feedback)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
