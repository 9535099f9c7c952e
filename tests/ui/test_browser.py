"""The web UI in headless Chromium against a real client and real servers on loopback
(issue 15): connected within the establishment time, disconnect and connect, a region
change reconnects through a server of that region, refusals of other origins and of
requests without the token, the Persian page is right to left, feedback reaches
``onehop feedback collect``. Screenshots of each state are written (ONEHOP_UI_SCREENSHOTS)."""

from __future__ import annotations

import asyncio
import json

import pytest

from onehop.cli import main
from onehop.client.transfer_urls import encode_transfer_url
from tests.feedback.conftest import sqlite_db

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ESTABLISH = 20_000  # ms: the client's establishment time on loopback, with room


def psinet(tmp_path) -> None:
    """Home pages and a newer client version, handed out by the servers' handshake."""
    (tmp_path / "psinet.json").write_text(json.dumps({
        "default_sponsor_id": "0000000000000000",
        "sponsors": {"0000000000000000": {"home_pages": {"None": [
            {"region": "None", "url": "https://home.example/welcome?client_region=XX"}]}}},
        "client_versions": {"Other": [{"version": "1"}, {"version": "7"}]}}))


async def open_page(browser, ui, locale: str = "en-US"):
    context = await browser.new_context(locale=locale, viewport={"width": 1100, "height": 900})
    page = await context.new_page()
    await page.goto(ui.server.url)
    return page


async def test_connect_disconnect_and_region_change(browser, network, start_ui, tmp_path, screenshot):
    from playwright.async_api import expect
    psinet(tmp_path)
    us = await network.add(region="US", PsinetDatabaseFilename="psinet.json")
    de = await network.add(region="DE", PsinetDatabaseFilename="psinet.json")
    ui = await start_ui([us.entry, de.entry], egress_region="US", config_keys={"ClientVersion": "1"})
    page = await open_page(browser, ui)
    await expect(page.locator("#state")).to_have_text("Connected", timeout=ESTABLISH)
    await expect(page.locator("#server-region")).to_contain_text("US")
    await expect(page.locator("#socks")).to_have_text(f"127.0.0.1:{ui.controller.socks_port}")
    await expect(page.locator("#homepages a")).to_have_attribute("href", "https://home.example/welcome?client_region=None")
    await expect(page.locator("#upgrade-text")).to_contain_text("Version 7")
    assert page.url.endswith("/") and "token" not in page.url  # the token left the address bar
    await expect(page.locator("#whole-device")).to_be_disabled()
    await expect(page.locator("#whole-device-why")).to_contain_text("needs root")
    await screenshot(page, "connected")

    await page.click("#toggle")
    await expect(page.locator("#state")).to_have_text("Disconnected", timeout=5000)
    assert ui.controller.active is None and not ui.controller.wanted
    await expect(page.locator("#toggle")).to_have_text("Connect")
    await screenshot(page, "disconnected")
    await page.keyboard.press("Tab")  # the button is reachable and works from the keyboard
    await page.focus("#toggle")
    await page.keyboard.press("Enter")
    await expect(page.locator("#state")).to_have_text("Connected", timeout=ESTABLISH)

    await page.select_option("#region", "DE")
    await page.click("#settings button[type=submit]")
    await expect(page.locator("#settings-result")).to_contain_text("Saved")
    await expect(page.locator("#server-region")).to_contain_text("DE", timeout=ESTABLISH)
    await expect(page.locator("#state")).to_have_text("Connected", timeout=ESTABLISH)
    assert ui.controller.active.entry.region == "DE"
    saved = ui.file_settings()
    assert saved["EgressRegion"] == "DE" and saved["SponsorId"] == "0000000000000000"  # others kept
    # The home page opens once per connect: at start and after the person's Connect, not
    # again when a settings change or a lost tunnel reconnects.
    assert ui.opened == ["https://home.example/welcome?client_region=None"] * 2
    await screenshot(page, "region-changed")


async def test_other_origins_and_requests_without_the_token_are_refused(browser, network, start_ui, tmp_path):
    from aiohttp import web
    from playwright.async_api import expect
    server = await network.add()
    ui = await start_ui([server.entry])
    page = await open_page(browser, ui)
    await expect(page.locator("#state")).to_have_text("Connected", timeout=ESTABLISH)
    origin, token = ui.server.origin, ui.server.token

    # An attacker's page on another localhost port, which even knows the token.
    attack = f"""<!doctype html><script>
      window.done = (async () => {{
        const out = {{}};
        try {{ await fetch("{origin}/api/disconnect", {{method: "POST", mode: "no-cors", body: "{{}}",
                  headers: {{"Content-Type": "text/plain"}}}});
              out.simple = "sent"; }}
        catch (e) {{ out.simple = "blocked"; }}
        try {{ const r = await fetch("{origin}/api/disconnect", {{method: "POST", body: "{{}}",
                  headers: {{"Content-Type": "application/json", "X-Onehop-Token": "{token}"}}}});
              out.cors = r.status; }}
        catch (e) {{ out.cors = "blocked"; }}
        out.events = await new Promise((resolve) => {{
          const es = new EventSource("{origin}/api/events?token={token}");
          es.onmessage = () => {{ es.close(); resolve("read"); }};
          es.onerror = () => {{ es.close(); resolve("refused"); }};
        }});
        return out;
      }})();
    </script>"""
    async def attacker_page(request):
        return web.Response(text=attack, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", attacker_page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        evil = await page.context.new_page()
        await evil.goto(f"http://localhost:{site._server.sockets[0].getsockname()[1]}/")
        result = await evil.evaluate("window.done")
    finally:
        await runner.cleanup()
    assert result["cors"] == "blocked" and result["events"] == "refused"
    reasons = {(path, why) for _, path, why in ui.server.refused}
    assert ("/api/disconnect", "cross-origin request refused") in reasons  # arrived, refused
    assert ("/api/events", "cross-origin request refused") in reasons
    assert ui.controller.wanted and ui.controller.active is not None

    # The page's own origin, without the token: refused too.
    status = await page.evaluate("""async () => (await fetch("/api/disconnect", {method: "POST", body: "{}",
                                        headers: {"Content-Type": "application/json"}})).status""")
    events = await page.evaluate("""async () => (await fetch("/api/events")).status""")
    assert (status, events) == (403, 403)
    assert ui.controller.wanted and ui.controller.active is not None


async def test_persian_is_right_to_left_and_the_language_switch(browser, network, start_ui, screenshot):
    from playwright.async_api import expect
    server = await network.add(region="DE")
    ui = await start_ui([server.entry])
    page = await open_page(browser, ui, locale="fa-IR")
    await expect(page.locator("#state")).to_have_text("متصل", timeout=ESTABLISH)
    assert await page.evaluate("[document.documentElement.dir, document.documentElement.lang]") == ["rtl", "fa"]
    assert await page.evaluate("getComputedStyle(document.querySelector('main')).direction") == "rtl"
    await screenshot(page, "persian")
    await page.select_option("#lang", "ru")
    await expect(page.locator("#state")).to_have_text("Подключено")
    assert await page.evaluate("document.documentElement.dir") == "ltr"
    await page.select_option("#lang", "zh")
    await expect(page.locator("#state")).to_have_text("已连接")
    await screenshot(page, "chinese")


async def test_feedback_from_the_page_reaches_collect(browser, network, start_ui, tmp_path, feedback_keys,
                                                      upload_server, screenshot, capsys):
    from playwright.async_api import expect
    private, public = feedback_keys
    server = await network.add()
    ui = await start_ui([server.entry], feedback_upload_urls=(encode_transfer_url(upload_server.url("/fb")),),
                        feedback_encryption_public_key=public)
    page = await open_page(browser, ui)
    await expect(page.locator("#state")).to_have_text("Connected", timeout=ESTABLISH)
    await page.fill("#fb-message", "pages stall when I visit 203.0.113.9")
    await page.fill("#fb-email", "person@example.org")
    await page.click("#fb-preview summary")
    preview = page.locator("#fb-preview-text")
    await expect(preview).to_contain_text('"ConnectionStatistics"')
    await expect(preview).to_contain_text("pages stall when I visit [ip]")
    assert "203.0.113.9" not in await preview.text_content()
    await screenshot(page, "feedback-preview")
    await page.uncheck("#fb-diagnostics")
    await expect(preview).not_to_contain_text("ConnectionStatistics")
    await page.check("#fb-diagnostics")
    await page.click("#feedback button[type=submit]")
    await expect(page.locator("#fb-result")).to_contain_text("Thank you", timeout=15_000)
    assert len(upload_server.files) == 1

    key_file = tmp_path / "feedback.pem"
    key_file.write_text(private)
    db = sqlite_db(tmp_path)
    assert await asyncio.to_thread(main, ["feedback", "collect", "--db", db, "--from", upload_server.upload_dir,
                                          "--key", str(key_file)]) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["feedback", "list", "--db", db, "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["message"] == "pages stall when I visit [ip]" and record["email"] == "person@example.org"
