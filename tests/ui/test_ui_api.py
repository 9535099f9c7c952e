"""The UI's server, settings and live state without a browser: access checks, the JSON
API, settings files, home pages opened once, progress from notices."""

from __future__ import annotations

import json
import os
import re
import stat
from argparse import Namespace
from dataclasses import replace

import aiohttp
import pytest

from onehop.client.app import build_config
from onehop.client.notices import Notices
from onehop.client.ui.live import LiveState
from onehop.client.ui.port import FeedbackResult, Settings, Snapshot, WholeDeviceSupport
from onehop.client.ui.server import CSP, TOKEN_HEADER, UIServer
from onehop.client.ui.settings import SettingsFile, check, overlay_path
from onehop.errors import ConfigError


NO_WHOLE_DEVICE = WholeDeviceSupport(False, "needs root")
EXTERNAL = re.compile(rb"""(src|href)\s*=\s*["']?(https?:)?//|url\(|@import|fetch\(["']https?:""")


class FakeControl:
    """A ClientControl with no client behind it."""

    def __init__(self, support: WholeDeviceSupport = NO_WHOLE_DEVICE) -> None:
        self.notices = Notices(None)
        self.current = Settings()
        self.wanted, self.connected, self.support = True, False, support
        self.calls: list[str] = []

    def subscribe(self, callback) -> None:
        self.notices.subscribe(callback)

    def recent_notices(self) -> list[dict]:
        return list(self.notices.recent)

    def snapshot(self) -> Snapshot:
        return Snapshot(self.wanted, self.connected, "US" if self.connected else "", "OSSH", 10, 20,
                        "127.0.0.1:1080", "127.0.0.1:8080", False, self.support, ("US",))

    def settings(self) -> Settings:
        return self.current

    def connect(self) -> None:
        self.calls.append("connect")
        self.wanted = True

    def disconnect(self) -> None:
        self.calls.append("disconnect")
        self.wanted = False

    async def apply(self, settings: Settings) -> Settings:
        check(settings)
        self.current = settings
        return settings

    def feedback_preview(self, message: str, email: str, diagnostics: bool) -> dict:
        return {"Feedback": {"Message": {"text": message}}}

    async def send_feedback(self, message: str, email: str, diagnostics: bool) -> FeedbackResult:
        return FeedbackResult("00" * 8, True)


@pytest.fixture
async def served():
    control = FakeControl()
    server = UIServer(control)
    await server.start()
    async with aiohttp.ClientSession() as session:
        yield server, control, session
    await server.close()


async def test_the_page_is_served_with_a_strict_csp_and_only_to_this_host(served):
    server, _, session = served
    async with session.get(server.origin + "/") as r:
        assert r.status == 200 and r.headers["Content-Security-Policy"] == CSP
        assert r.headers["X-Frame-Options"] == "DENY" and "<script src=\"/static/app.js\"" in await r.text()
    for name in ("app.js", "app.css", "i18n.json", "icon.svg"):
        async with session.get(f"{server.origin}/static/{name}") as r:
            assert r.status == 200
            assert not EXTERNAL.search(await r.read()), name  # nothing is loaded from elsewhere
    async with session.get(server.origin + "/static/..%2fserver.py") as r:
        assert r.status == 404
    async with session.get(server.origin + "/", headers={"Host": f"attacker.example:{server.port}"}) as r:
        assert r.status == 403  # DNS rebinding: another name pointing at 127.0.0.1


async def test_a_failing_handler_still_answers_with_the_security_headers(served, monkeypatch):
    """A missing page file (as in a standalone build without its data) was aiohttp's bare 500."""
    import onehop.client.ui.server as ui_server

    def missing(name):
        raise FileNotFoundError(name)
    monkeypatch.setattr(ui_server, "_static", missing)
    server, _, session = served
    async with session.get(server.origin + "/") as r:
        assert r.status == 500 and r.headers["Content-Security-Policy"] == CSP
        assert r.headers["X-Frame-Options"] == "DENY"


async def test_every_api_request_needs_the_token_and_state_changes_a_json_body(served):
    server, control, session = served
    url = server.origin
    for method, path in (("GET", "/api/status"), ("GET", "/api/events"), ("GET", "/api/settings"),
                         ("POST", "/api/disconnect"), ("POST", "/api/settings"), ("POST", "/api/feedback")):
        for headers in ({}, {TOKEN_HEADER: "wrong"}):
            async with session.request(method, url + path, json={}, headers=headers) as r:
                assert r.status == 403, (method, path, headers)
    token = {TOKEN_HEADER: server.token}
    async with session.post(url + "/api/disconnect", data="{}", headers={**token, "Content-Type": "text/plain"}) as r:
        assert r.status == 403  # what a cross-site form could send
    async with session.post(url + "/api/disconnect", json={}, headers={**token, "Origin": "http://127.0.0.1:1"}) as r:
        assert r.status == 403
    async with session.post(url + "/api/disconnect", json={}, headers={**token, "Sec-Fetch-Site": "cross-site"}) as r:
        assert r.status == 403
    assert control.calls == []
    async with session.post(url + "/api/disconnect", json={}, headers={**token, "Origin": server.origin}) as r:
        assert r.status == 200
    async with session.get(url + "/api/status", headers=token) as r:
        status = await r.json()
    assert control.calls == ["disconnect"] and status["state"] == "disconnected"
    assert status["socks_proxy"] == "127.0.0.1:1080" and status["whole_device"]["available"] is False


async def test_settings_are_checked_by_key(served):
    server, control, session = served
    headers = {TOKEN_HEADER: server.token}
    bad = {"egress_region": "Germany", "protocols": [], "upstream_proxy": "ftp://x", "colour": 1}
    async with session.post(server.origin + "/api/settings", json=bad, headers=headers) as r:
        assert r.status == 400
        keys = {p["key"] for p in (await r.json())["problems"]}
    assert keys == {"colour"}  # unknown keys are reported before values are checked
    del bad["colour"]
    async with session.post(server.origin + "/api/settings", json=bad, headers=headers) as r:
        keys = {p["key"] for p in (await r.json())["problems"]}
    assert keys == {"egress_region", "protocols", "upstream_proxy"} and control.current == Settings()
    good = {"egress_region": "de", "protocols": ["SSH"], "split_tunnel_regions": ["us"]}
    async with session.post(server.origin + "/api/settings", json=good, headers=headers) as r:
        assert r.status == 200 and (await r.json())["egress_region"] == "DE"
    assert control.current.split_tunnel_regions == ("US",)


async def test_the_event_stream_pushes_the_state(served):
    server, control, session = served
    async with session.get(f"{server.origin}/api/events?token={server.token}") as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        first = json.loads((await r.content.readline()).decode()[len("data: "):])
        control.notices.emit("ClientRegion", region="IR")
        await r.content.readline()
        second = json.loads((await r.content.readline()).decode()[len("data: "):])
    assert first["state"] == "connecting" and second["client_region"] == "IR"


def test_settings_go_into_the_config_file_keeping_its_other_keys_and_mode(tmp_path):
    path = tmp_path / "client.json"
    path.write_text(json.dumps({"PropagationChannelId": "0123456789ABCDEF", "EgressRegion": "US"}))
    os.chmod(path, 0o640)
    SettingsFile(str(path), str(tmp_path)).save(Settings(egress_region="DE", upstream_proxy="socks5://127.0.0.1:9"))
    saved = json.loads(path.read_text())
    assert saved["PropagationChannelId"] == "0123456789ABCDEF" and saved["EgressRegion"] == "DE"
    assert saved["UpstreamProxyURL"] == "socks5://127.0.0.1:9" and stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_without_a_config_file_the_settings_are_read_back_at_the_next_start(tmp_path):
    data = str(tmp_path / "data")
    SettingsFile(None, data).save(Settings(egress_region="NL", protocols=("SSH",), split_tunnel_own_region=True))
    assert stat.S_IMODE(os.stat(overlay_path(data)).st_mode) == 0o600
    args = Namespace(config=None, data_dir=data, socks_port=None, http_port=None, region=None, protocol=None,
                     upstream_proxy=None, server_list=None, target_server_entry=None, open_home_page=None)
    config = build_config(args)
    assert (config.egress_region, config.protocols, config.split_tunnel_own_region) == ("NL", ("SSH",), True)
    assert build_config(replace_ns(args, region="FR")).egress_region == "FR"  # a flag still wins


def replace_ns(args: Namespace, **changes) -> Namespace:
    return Namespace(**{**vars(args), **changes})


def test_home_pages_open_once_per_connect_and_progress_comes_from_notices():
    control, opened = FakeControl(), []
    live = LiveState(control, open_url=opened.append)
    n = control.notices
    for _ in range(2):  # a reconnection brings the same home page again
        n.emit("ActiveTunnel", diagnosticID="a", protocol="OSSH", region="None")
        n.emit("Homepage", url="https://home.example/")
    assert opened == ["https://home.example/"] and live.homepages == ["https://home.example/"]
    n.info("connecting: asked by the user")
    n.emit("Homepage", url="https://home.example/")
    assert len(opened) == 2
    n.emit("ClientUpgradeAvailable", version="9")
    n.info("upgrade download progress", file="x", bytes=50, total=100)
    assert live.upgrade == {"version": "9", "state": "downloading", "bytes": 50, "total": 100}
    n.emit("ClientUpgradeDownloaded", filename="/x", version="9")
    n.info("onehop 9 installed at /x; restart onehop to use it", version="9")
    assert live.upgrade["state"] == "downloaded" and "restart" in live.upgrade["message"]
    n.info("remote server list download started", url="https://s3.example/list")
    assert live.remote_list == {"state": "downloading"}
    n.emit("RemoteServerListResourceDownloaded", url="https://s3.example/list", imported=3)
    assert live.remote_list["state"] == "done" and live.remote_list["imported"] == 3
    texts = [entry["text"] for entry in live.status()["notices"]]
    assert "connected to a server in ? via OSSH" in texts and not any("None" in t for t in texts)
    assert not any("upgrade download progress" in t for t in texts)


async def test_whole_device_cannot_be_switched_on_where_unsupported(tmp_path):
    from onehop.client.candidates import MemoryStore
    from onehop.client.config import ClientConfig
    from onehop.client.controller import Controller
    from onehop.client.ui.control import ControllerControl
    controller = Controller(ClientConfig(data_dir=str(tmp_path)), MemoryStore([]), Notices(None))
    control = ControllerControl(controller, SettingsFile(None, str(tmp_path)),
                                whole_device_support=lambda: WholeDeviceSupport(False, "needs root"))
    with pytest.raises(ConfigError) as caught:
        await control.apply(replace(control.settings(), whole_device=True))
    assert [p.key for p in caught.value.problems] == ["whole_device"]
    assert not os.path.exists(overlay_path(str(tmp_path)))  # nothing saved
    assert control.snapshot().whole_device.available is False
