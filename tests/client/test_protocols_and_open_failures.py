"""Which protocols a candidate is dialled with (OSSH-PREFIX rides on OSSH), and how a
failed channel open is told to the application (OpenFailure -> SOCKS reply / HTTP status)."""

from __future__ import annotations

import errno

import asyncssh
import pytest

from onehop.client.dialer import protocols_for
from onehop.client.http_proxy import STATUS_FOR_FAILURE
from onehop.client.socks_proxy import REPLY_FOR_FAILURE
from onehop.client.splice import OpenFailure, classify
from onehop.core.socks5 import ReplyCode
from onehop.errors import TunnelError
from onehop.server import forwarding
from tests.helpers.builders import make_entry

ALL = ("OSSH", "OSSH-PREFIX", "SSH")


# -- protocols_for ----------------------------------------------------------------------

def test_both_protocols_and_the_prefix_variant():
    assert sorted(protocols_for(make_entry("198.51.100.1"), ALL)) == sorted(ALL)


def test_prefix_needs_ossh_offered():
    ssh_only = make_entry("198.51.100.1", capabilities=("SSH", "ssh-api-requests"), ossh_port=None)
    assert protocols_for(ssh_only, ALL) == ["SSH"]
    assert protocols_for(ssh_only, ("OSSH-PREFIX",)) == []


def test_prefix_needs_an_obfuscated_port():
    no_port = make_entry("198.51.100.1", ossh_port=None)
    assert "OSSH-PREFIX" not in protocols_for(no_port, ALL) and "OSSH" not in protocols_for(no_port, ALL)


def test_disable_ossh_prefix_removes_only_the_prefix_variant():
    entry = make_entry("198.51.100.1", disable_ossh_prefix=True)
    assert sorted(protocols_for(entry, ALL)) == ["OSSH", "SSH"]
    assert protocols_for(entry, ("OSSH-PREFIX",)) == []


def test_prefix_only_when_the_user_allows_it():
    entry = make_entry("198.51.100.1")
    assert sorted(protocols_for(entry, ("OSSH", "SSH"))) == ["OSSH", "SSH"]
    assert protocols_for(entry, ("OSSH-PREFIX",)) == ["OSSH-PREFIX"]
    assert protocols_for(entry, ()) == []


def test_no_protocol_is_listed_twice():
    for allowed in [ALL, ("OSSH-PREFIX", "OSSH-PREFIX", "OSSH")]:
        chosen = protocols_for(make_entry("198.51.100.1"), allowed)
        assert len(chosen) == len(set(chosen))


def test_unknown_protocol_names_are_never_chosen():
    entry = make_entry("198.51.100.1", capabilities=("OSSH", "SSH", "QUIC-OSSH", "ssh-api-requests"))
    assert set(protocols_for(entry, ALL + ("QUIC-OSSH",))) <= set(ALL)


# -- classify ---------------------------------------------------------------------------

@pytest.mark.parametrize("code, reason, expected", [
    (asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "administratively prohibited", OpenFailure.NOT_ALLOWED),
    (asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "connection refused", OpenFailure.NOT_ALLOWED),  # code wins
    (asyncssh.OPEN_CONNECT_FAILED, "connection refused", OpenFailure.REFUSED),
    (asyncssh.OPEN_CONNECT_FAILED, "Connection Refused", OpenFailure.REFUSED),
    (asyncssh.OPEN_CONNECT_FAILED, "dial tcp 1.2.3.4:80: connect: connection refused", OpenFailure.REFUSED),
    (asyncssh.OPEN_CONNECT_FAILED, "connection timed out", OpenFailure.TIMEOUT),
    (asyncssh.OPEN_CONNECT_FAILED, "Network unreachable", OpenFailure.NETWORK_UNREACHABLE),
    (asyncssh.OPEN_CONNECT_FAILED, "host unreachable", OpenFailure.HOST_UNREACHABLE),
    (asyncssh.OPEN_CONNECT_FAILED, "name resolution failed", OpenFailure.HOST_UNREACHABLE),
    (asyncssh.OPEN_CONNECT_FAILED, "connection failed", OpenFailure.GENERAL),
    (asyncssh.OPEN_CONNECT_FAILED, "", OpenFailure.GENERAL),
    (asyncssh.OPEN_RESOURCE_SHORTAGE, "too many channels", OpenFailure.GENERAL),
    (asyncssh.OPEN_UNKNOWN_CHANNEL_TYPE, "unknown channel type", OpenFailure.GENERAL),
])
def test_channel_open_errors(code, reason, expected):
    assert classify(asyncssh.ChannelOpenError(code, reason)) is expected


def test_no_tunnel_is_its_own_failure():
    assert classify(TunnelError("no-tunnel", "no tunnel within 30 s")) is OpenFailure.NO_TUNNEL
    assert classify(TunnelError("dial", "connection reset")) is OpenFailure.GENERAL


def test_other_errors():
    assert classify(TimeoutError()) is OpenFailure.TIMEOUT
    assert classify(TimeoutError()) is OpenFailure.TIMEOUT
    assert classify(ConnectionResetError()) is OpenFailure.GENERAL
    assert classify(asyncssh.ConnectionLost("gone")) is OpenFailure.GENERAL


@pytest.mark.parametrize("dial_error, expected", [
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), OpenFailure.REFUSED),
    (TimeoutError(), OpenFailure.TIMEOUT),
    (OSError(errno.ENETUNREACH, "unreachable"), OpenFailure.NETWORK_UNREACHABLE),
    (OSError(errno.EHOSTUNREACH, "unreachable"), OpenFailure.HOST_UNREACHABLE),
    (OSError(errno.EACCES, "denied"), OpenFailure.GENERAL),
])
def test_our_servers_dial_failures_reach_the_application_as_meant(dial_error, expected):
    # The server's reasons (server/forwarding.py) and the client's reading of them agree.
    assert classify(forwarding._dial_error(dial_error)) is expected
    assert classify(forwarding.prohibited()) is OpenFailure.NOT_ALLOWED


# -- replies ----------------------------------------------------------------------------

def test_every_open_failure_has_a_socks_reply():
    assert set(REPLY_FOR_FAILURE) == set(OpenFailure)
    assert all(isinstance(code, ReplyCode) and code != ReplyCode.SUCCEEDED for code in REPLY_FOR_FAILURE.values())


@pytest.mark.parametrize("failure, code", [
    (OpenFailure.NOT_ALLOWED, ReplyCode.NOT_ALLOWED),
    (OpenFailure.REFUSED, ReplyCode.CONNECTION_REFUSED),
    (OpenFailure.NETWORK_UNREACHABLE, ReplyCode.NETWORK_UNREACHABLE),
    (OpenFailure.HOST_UNREACHABLE, ReplyCode.HOST_UNREACHABLE),
    (OpenFailure.GENERAL, ReplyCode.GENERAL_FAILURE),
])
def test_socks_replies_say_what_happened(failure, code):
    assert REPLY_FOR_FAILURE[failure] == code


def test_http_statuses_are_errors():
    assert all(500 <= STATUS_FOR_FAILURE.get(f, 502) <= 599 or STATUS_FOR_FAILURE.get(f) == 403
               for f in OpenFailure)
    assert STATUS_FOR_FAILURE[OpenFailure.NOT_ALLOWED] == 403
