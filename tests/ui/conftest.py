"""Fixtures for the web UI: a client with its UI on loopback, and headless Chromium.

The browser is Debian's ``chromium`` driven by Playwright (``executable_path``; Playwright
never downloads a browser here). Without it these tests skip, saying why, except under
ONEHOP_CI=1, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field

import pytest

from onehop.client.ui.control import ControllerControl
from onehop.client.ui.port import WholeDeviceSupport
from onehop.client.ui.server import UIServer
from onehop.client.ui.settings import SettingsFile
from tests.e2e.conftest import make_client, network, notice_log  # noqa: F401  (fixtures)
from tests.feedback.conftest import feedback_keys, upload_server  # noqa: F401  (fixtures)

CHROMIUM = os.environ.get("ONEHOP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = os.environ.get("ONEHOP_UI_SCREENSHOTS")  # e.g. docs/client-ui: where the PNGs go


def _missing() -> str:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return ""


@pytest.fixture
async def browser():
    missing = _missing()
    if missing:
        if os.environ.get("ONEHOP_CI") == "1":
            pytest.fail(f"browser tests need Chromium and Playwright under ONEHOP_CI=1: {missing}")
        pytest.skip(missing)
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def screenshot(tmp_path):
    directory = SHOTS or str(tmp_path / "shots")
    os.makedirs(directory, exist_ok=True)

    async def take(page, name: str) -> str:
        path = os.path.join(directory, f"{name}.png")
        await page.screenshot(path=path, full_page=True)
        return path
    return take


@dataclass
class RunningUI:
    server: UIServer
    controller: object
    config_file: str
    opened: list[str] = field(default_factory=list)

    def file_settings(self) -> dict:
        with open(self.config_file, encoding="utf-8") as f:
            return json.load(f)


@pytest.fixture
async def start_ui(tmp_path, make_client):  # noqa: F811 (pytest passes the fixture imported above; not a redefinition)
    servers: list[UIServer] = []

    async def start(entries, *, config_keys: dict | None = None, **overrides) -> RunningUI:
        controller = await make_client(entries, wait_for_tunnel=False, **overrides)
        config_file = str(tmp_path / f"client{len(servers)}.json")
        with open(config_file, "w", encoding="utf-8") as f:
            json.dump({"SponsorId": "0000000000000000", **(config_keys or {})}, f)
        opened: list[str] = []
        control = ControllerControl(controller, SettingsFile(config_file, controller.config.data_dir),
                                    whole_device_support=lambda: WholeDeviceSupport(False, "needs root"))
        server = UIServer(control, open_url=opened.append)
        servers.append(server)
        await server.start()
        return RunningUI(server, controller, config_file, opened)

    yield start
    for server in servers:
        await server.close()
