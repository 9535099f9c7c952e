"""Issue 18 item 11: URLs from the network are opened or shown only if http(s) and clean.

A server's handshake lists home pages; before the fix the first went straight to
``webbrowser.open`` (``file:``, ``javascript:``, a local program's URL scheme...) and
every one became a Homepage notice, which UIs render as a link. Text from the network
shown on the terminal view was read as rich markup, so it could draw its own links.
"""

from __future__ import annotations

import io

import pytest

from onehop.client.candidates import MemoryStore
from onehop.client.config import ClientConfig
from onehop.client.controller import Controller
from onehop.client.notices import Notices
from onehop.core.urls import safe_link

BAD = ["javascript:alert(1)", "file:///etc/passwd", "ms-settings:network", "vbscript:x", "data:text/html,hi",
       "https://example.com/\x1b]8;;evil\x07", "https://example.com/\nSet-Cookie: x", "http://exa mple.com/",
       "https://" + "a" * 3000 + ".com/", "https:///no-host", "//example.com/", "", "HTTPS\x00://x"]
GOOD = ["https://example.com/welcome?x=1", "http://192.0.2.1:8080/", "HTTPS://Example.COM/"]


@pytest.mark.parametrize("url", BAD)
def test_unsafe_urls_are_refused(url):
    assert safe_link(url) is None


@pytest.mark.parametrize("url", GOOD)
def test_http_and_https_urls_pass(url):
    assert safe_link(url) == url


def test_only_safe_home_pages_are_opened_and_announced(tmp_path, monkeypatch):
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url) or True)
    notices = Notices(None)
    controller = Controller(ClientConfig(data_dir=str(tmp_path), open_home_page=True), MemoryStore(), notices)
    controller._home_pages(("file:///etc/passwd", "javascript:alert(1)", "https://example.com/welcome"))
    assert opened == ["https://example.com/welcome"]
    homepages = [n["data"]["url"] for n in notices.recent if n["noticeType"] == "Homepage"]
    assert homepages == ["https://example.com/welcome"]
    refused = [n for n in notices.recent if n["noticeType"] in ("Alert", "Info") and "home page" in
               n["data"].get("message", "")]
    assert len(refused) == 1  # one line for the batch


def test_terminal_view_shows_network_text_as_text_not_markup(tmp_path):
    from rich.console import Console

    from onehop.client.terminal_view import TerminalView
    notices = Notices(None)
    controller = Controller(ClientConfig(data_dir=str(tmp_path)), MemoryStore(), notices)
    out = io.StringIO()
    view = TerminalView(controller, console=Console(file=out, force_terminal=True, width=200))
    notices.alert("connected request failed: [link=file:///etc/passwd]click[/link] [bold red]x")
    notices.emit("ClientRegion", region="[link=https://evil.example]US[/link]")
    view._console.print(view.render())
    text = out.getvalue()
    assert "\x1b]8;" not in text  # no OSC 8 hyperlink drawn
    assert "[link=file:///etc/passwd]" in text
