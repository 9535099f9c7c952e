"""The controller still offers what ``client/ports.py`` says the parts around it use: each
Protocol member is present on a real (not started) Controller, with the right kind
(method or value)."""

from __future__ import annotations

import inspect
import typing

import pytest

from onehop.client import ports
from onehop.client.candidates import MemoryStore
from onehop.client.config import ClientConfig
from onehop.client.controller import Controller
from onehop.client.notices import Notices

PORTS = (ports.OutboundClient, ports.FeedbackClient, ports.StatusSource, ports.ControlledClient)


def members(protocol) -> dict[str, str]:
    """{name: 'method' | 'value'} of a Protocol and the Protocols it extends."""
    found: dict[str, str] = {}
    for klass in reversed(protocol.__mro__):
        if klass in (object, typing.Protocol, typing.Generic) or not getattr(klass, "_is_protocol", False):
            continue
        for name in getattr(klass, "__annotations__", {}):
            found[name] = "value"
        for name, value in vars(klass).items():
            if inspect.isfunction(value):
                found[name] = "method"
            elif isinstance(value, property):
                found[name] = "value"
    return found


@pytest.fixture
def controller(tmp_path):
    return Controller(ClientConfig(data_dir=str(tmp_path)), MemoryStore(), Notices(None))


@pytest.mark.parametrize("protocol", PORTS, ids=lambda p: p.__name__)
def test_the_controller_offers_every_member(controller, protocol):
    wanted = members(protocol)
    assert wanted  # the reading of the Protocol found something
    missing = [name for name in wanted if not hasattr(controller, name)]
    assert missing == []
    wrong_kind = [name for name, kind in wanted.items() if (kind == "method") != callable(getattr(controller, name))]
    assert wrong_kind == []


def test_members_are_read_with_their_bases():
    assert {"config", "notices", "outbound_opener", "store", "byte_counter"} <= set(members(ports.FeedbackClient))
    assert members(ports.ControlledClient)["connect"] == "method"
    assert members(ports.ControlledClient)["wanted"] == "value"
