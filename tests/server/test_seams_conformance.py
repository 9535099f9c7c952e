"""The real parts answer every member of the seams they stand behind (``server/seams.py``),
so the fakes of the unit tests cannot drift from what production offers: a member the
Protocol names but a real class lacks (or offers as data where a call is expected)
fails here, not in a live tunnel."""

from __future__ import annotations

import inspect
from typing import Protocol

import pytest

from onehop.server import seams
from onehop.server.config import parse_server_config
from onehop.server.generate import generate_server
from onehop.server.service import TunnelServer
from onehop.server.session import ClientSession
from tests.server.seam_fakes import FakeConn, FakeHost


def members(protocol: type) -> dict[str, bool]:
    """Member name -> True for a method (called), False for a property (read)."""
    found: dict[str, bool] = {}
    for klass in reversed(protocol.__mro__):
        if klass in (object, Protocol) or not getattr(klass, "_is_protocol", False):
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_"):
                found[name] = not isinstance(value, property)
    return found


@pytest.fixture
def server(tmp_path):
    generated = generate_server("127.0.0.1", ossh_port=45678, ssh_port=45679)
    server = TunnelServer(parse_server_config(dict(generated.config), "test", str(tmp_path)))
    yield server
    server.geoip.close()
    server.events.close()


def session() -> ClientSession:
    return ClientSession(FakeHost(), FakeConn())


def assert_answers(obj: object, protocol: type) -> None:
    for name, is_method in members(protocol).items():
        assert hasattr(obj, name), f"{type(obj).__name__} lacks {protocol.__name__}.{name}"
        if is_method:
            assert callable(getattr(obj, name)), f"{type(obj).__name__}.{name} is not callable"


def test_members_are_found():
    assert members(seams.UdpgwSession) == {"rules": False, "counters": False, "closing": False,
                                           "forward_decision": True, "in_split_region": True,
                                           "charge_downstream": True, "downstream_limited": False,
                                           "dns_resolver": False,
                                           "udpgw_closed": True}


@pytest.mark.parametrize("protocol", [seams.SessionHost, seams.APIHost])
def test_the_server_process_answers(server, protocol):
    assert_answers(server, protocol)


def test_the_servers_parts_answer_their_seams(server):
    assert_answers(server.api, seams.APIResponder)
    assert_answers(server.events, seams.APIEvents)
    assert_answers(server.events, seams.TunnelEvents)
    assert_answers(server.geoip, seams.GeoLookup)
    assert_answers(server.forward_policy, seams.DestinationPolicy)


@pytest.mark.parametrize("protocol", [seams.TunnelView, seams.APIClient, seams.UdpgwSession,
                                      seams.ServedClient])
def test_a_session_answers(protocol):
    assert_answers(session(), protocol)


def test_method_signatures_match_where_the_session_is_called():
    for protocol in (seams.APIClient, seams.UdpgwSession):
        for name, is_method in members(protocol).items():
            if is_method:
                wanted = list(inspect.signature(getattr(protocol, name)).parameters)
                offered = list(inspect.signature(getattr(ClientSession, name)).parameters)
                assert offered == wanted, name
