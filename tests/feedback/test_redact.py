"""The redactor: no address and no secret survives, server addresses become server IDs."""

from __future__ import annotations

import ipaddress
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onehop.core.redact import IP, SECRET, Redactor, is_secret_name, redact

SERVERS = {"192.0.2.7": "host-1", "2001:db8::7": "host-2"}


@pytest.mark.parametrize("text, expected", [
    ("cannot connect to 10.1.2.3:443: refused", "cannot connect to [ip]:443: refused"),
    ("dial [2001:db8::1]:8080 failed", "dial [[ip]]:8080 failed"),
    ("link-local fe80::1%eth0 up", "link-local [ip] up"),
    ("full 2001:0db8:0000:0000:0000:ff00:0042:8329.", "full [ip]."),
    ("mapped ::ffff:203.0.113.9 seen", "mapped [ip] seen"),
    ("via 192.0.2.7 and 2001:db8:0:0::7", "via [server:host-1] and [server:host-2]"),
    ("mapped server ::ffff:192.0.2.7", "mapped server [server:host-1]"),
    ("time 12:34:56.789 on 2026-11-25T16:00:00.000Z", "time 12:34:56.789 on 2026-11-25T16:00:00.000Z"),
    ("card 00:1a:2b:3c:4d:5e", "card [mac]"),
    ("http://user:pa55@proxy.example:8080/x", "http://[secret]@proxy.example:8080/x"),
    ("Authorization: Bearer abcdefghijk", "Authorization: [secret] [secret]"),
    ('{"SshPassword": "abc", "SessionId":"0123"}', '{"SshPassword": "[secret]", "SessionId":"[secret]"}'),
    ("password=hunter2; token: xyz&api_key=k1", "password=[secret]; token: [secret]&api_key=[secret]"),
    ("error: password: hunter2", "error: password: [secret]"),
    ("session " + "ab" * 16, "session [secret]"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- ok", "[secret] ok"),
    ("sig " + "QUJD" * 12 + "1==", "sig [secret]"),
    ("propagation channel 0123456789ABCDEF stays", "propagation channel 0123456789ABCDEF stays"),
    ("version 1.2.3 build 4", "version 1.2.3 build 4"),
])
def test_examples(text, expected):
    assert Redactor(SERVERS).text(text) == expected


def test_kept_addresses_stay_as_written():
    r = Redactor(keep=["198.51.100.9", "2001:db8::9"])
    assert r.text("to 198.51.100.9 and 2001:DB8::9 and 198.51.100.10") == \
        "to 198.51.100.9 and 2001:DB8::9 and [ip]"


def test_json_values():
    value = {"Password": "x", "keys": ["A", "B"], "list": [{"ip": "8.8.8.8"}], "n": 3,
             "private_key": None, "nested": {"obfuscatedKey": "k", "note": "from 10.0.0.1"},
             "10.0.0.2": "address as a member name"}
    assert redact(value) == {"Password": SECRET, "keys": ["A", "B"], "list": [{"ip": IP}], "n": 3,
                             "private_key": None, "nested": {"obfuscatedKey": SECRET, "note": "from [ip]"},
                             IP: "address as a member name"}


@pytest.mark.parametrize("name, secret", [
    ("SshPassword", True), ("sessionId", True), ("session_id", True), ("upload-token", True),
    ("FeedbackEncryptionPublicKey", True), ("cookie", True), ("a.pwd", True), ("keys", False),
    ("noticeType", False), ("diagnosticID", False), ("protocol", False), ("keepalive", False),
])
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret


# -- fuzz -----------------------------------------------------------------------------

_text = st.text(max_size=40)
_addresses = st.ip_addresses().map(str)


@given(_text, _addresses, _text)
def test_fuzz_an_address_never_survives(before, address, after):
    out = Redactor().text(before + address + after)
    assert address not in out


@given(_text, _addresses, _text)
def test_fuzz_a_server_address_becomes_its_id_or_goes(before, address, after):
    r = Redactor({address: "srv-9"})
    out = r.text(before + " " + address + " " + after)
    assert address not in out
    assert "[server:srv-9]" in out or IP in out or SECRET in out


@given(st.text(max_size=300))
def test_fuzz_idempotent(text):
    r = Redactor(SERVERS)
    once = r.text(text)
    assert r.text(once) == once


@given(st.text(alphabet="0123456789abcdefABCDEF:.%[]/ -=\"'", max_size=200))
def test_fuzz_no_valid_address_token_remains(text):
    out = Redactor().text(text)
    for token in out.replace("[", " ").replace("]", " ").replace("/", " ").split():
        for piece in token.strip(".:").split("%")[:1]:
            try:
                ipaddress.ip_address(piece)
            except ValueError:
                continue
            raise AssertionError(f"{piece!r} survived in {out!r}")


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                    lambda inner: (st.lists(inner, max_size=4)
                                   | st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                    max_leaves=20))
def test_fuzz_json_values_stay_json(value):
    out = redact(value)
    json.dumps(out)
    assert redact(out) == out


@settings(max_examples=40)
@given(st.text(alphabet="ab.-:=1%\"[", min_size=1, max_size=12), st.integers(min_value=500, max_value=2000))
def test_fuzz_adversarial_text_is_linear(pattern, repeat):
    started = time.perf_counter()
    Redactor().text(pattern * repeat)  # catastrophic backtracking would take minutes here
    assert time.perf_counter() - started < 2.0


def test_other_objects_become_redacted_text():
    assert redact({"error": OSError(111, "refused by 10.9.8.7"), "n": 1.5}) == \
        {"error": "[Errno 111] refused by [ip]", "n": 1.5}
