"""Whole-device state as the terminal view (and a UI, through the controller) shows it."""

from __future__ import annotations

import io

from rich.console import Console

from onehop.client.candidates import MemoryStore
from onehop.client.config import ClientConfig
from onehop.client.controller import Controller
from onehop.client.notices import Notices
from onehop.client.terminal_view import TerminalView
from onehop.client.wholedevice import WholeDevice


def frame(view: TerminalView) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(view.render())
    return out.getvalue()


def test_the_terminal_view_shows_mode_counts_and_refusals(tmp_path):
    controller = Controller(ClientConfig(data_dir=str(tmp_path)), MemoryStore([]), Notices(None))
    view = TerminalView(controller)
    assert "whole device" not in frame(view)  # not in whole-device mode: no line at all
    controller.whole_device = WholeDevice(controller, share_lan="eth1")
    state = controller.whole_device.state
    assert "whole device" in frame(view) and "off" in frame(view)
    state.active, state.ipv6 = True, "blocked"
    state.tcp_connections, state.udp_datagrams, state.tcp_refused, state.udp_dropped = 12, 40, 2, 3
    (line,) = [x for x in frame(view).splitlines() if "whole device" in x]
    assert "on (IPv6 blocked, LAN eth1): 12 connections, 40 datagrams; refused 2 connections, " \
           "dropped 3 datagrams" in line
    assert state.summary()["tcp_connections"] == 12


def test_refusals_are_counted_and_said_a_bounded_number_of_times(tmp_path):
    seen = []
    notices = Notices(None)
    notices.subscribe(seen.append)
    controller = Controller(ClientConfig(data_dir=str(tmp_path)), MemoryStore([]), notices)
    whole = WholeDevice(controller)
    for i in range(50):
        whole.refused_connection("connection refused", destination=f"10.0.0.1:{i}")
    whole.refused_connection("no tunnel available", quiet=True)
    assert whole.state.tcp_refused == 51
    assert len([n for n in seen if "not forwarded" in n["data"].get("message", "")]) == 20


def test_dns_to_a_private_resolver_goes_to_the_servers_resolver():
    from onehop.client.wholedevice.udp_relay import to_server_resolver
    assert to_server_resolver(("192.168.1.1", 53)) and to_server_resolver(("fd00::1", 53))
    assert not to_server_resolver(("8.8.8.8", 53))        # a public resolver: as addressed
    assert not to_server_resolver(("192.168.1.1", 7))     # not DNS
