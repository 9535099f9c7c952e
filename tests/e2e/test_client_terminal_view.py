"""The client on a terminal (issue 16): sentences in the panel, never JSON over it; a fatal
start error is the last frame's state; an unknown region reads "unknown"."""

from __future__ import annotations

import asyncio
import io
import socket

import pytest
from rich.console import Console

from onehop.client.app import run_controller
from onehop.client.candidates import MemoryStore
from onehop.client.config import ClientConfig
from onehop.client.controller import Controller
from onehop.client.notices import Notices
from onehop.client.terminal_view import TerminalView

pytestmark = pytest.mark.e2e


def frame(view: TerminalView) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(view.render())
    return out.getvalue()


def test_unknown_regions_read_unknown_and_alerts_are_sentences(tmp_path):
    controller = Controller(ClientConfig(data_dir=str(tmp_path)), MemoryStore([]), Notices(None))
    view = TerminalView(controller, notices_path="/x/notices.jsonl")
    controller.notices.emit("ActiveTunnel", diagnosticID="abc", protocol="OSSH", region=None)
    controller.notices.emit("ClientRegion", region=None)
    controller.notices.alert("no server entries to try", hint="give a server with --target-server-entry")
    text = frame(view)
    (line,) = [x for x in text.splitlines() if "your region" in x]
    assert "unknown" in line and "None" not in text
    assert "no server entries to try: give a server with --target-server-entry" in text
    assert "{" not in text and "noticeType" not in text
    assert "/x/notices.jsonl" in text


async def test_a_port_conflict_is_the_final_state_and_no_json_reaches_the_terminal(tmp_path, monkeypatch,
                                                                                  capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        screen = io.StringIO()
        monkeypatch.setattr("onehop.client.terminal_view.Console",
                            lambda: Console(file=screen, width=200, color_system=None, force_terminal=True))
        config = ClientConfig(data_dir=str(tmp_path), socks_port=port, http_port=0)
        code = await asyncio.wait_for(run_controller(config, Notices(None), terminal=True), 20)
    assert code == 1
    last = screen.getvalue().rsplit("onehop", 1)[-1]
    assert "stopped: " in last and f"127.0.0.1:{port}" in last and "starting" not in last
    captured = capsys.readouterr()
    assert "noticeType" not in captured.out + captured.err + screen.getvalue()
