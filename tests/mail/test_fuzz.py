"""Hypothesis: hostile requests and configurations raise only our errors."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from onehop.errors import ConfigError
from onehop.mail import policy
from onehop.mail.config import parse_responder_config
from onehop.mail.language import choose_language
from onehop.mail.parse import MalformedMessage, Request, parse_request

from .helpers import campaign_entry

OWN = frozenset({"get@example.org"})
HEADER_NAMES = st.sampled_from(["From", "To", "Subject", "Message-ID", "References", "Auto-Submitted",
                                "Precedence", "List-Id", "Content-Type", "Content-Transfer-Encoding",
                                "Accept-Language", "Content-Language", "X-Auto-Response-Suppress",
                                "MIME-Version", "X-Autoreply", "DKIM-Signature"])
VALUES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=120).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"multipart/mixed; boundary=\"x\"", b"text/plain; charset=\"\xff\"", b"base64",
                     b"=?utf-8?b?////?=", b"=?x?q?=ZZ?=", b"<a@b>", b"a@b, c@d", b"\"@\"@@", b"no",
                     b"auto-replied", b"bulk", b"fa;q=0.5, ru;q=x", b"<>", b"message/rfc822"]))
HEADERS = st.lists(st.tuples(HEADER_NAMES, VALUES), max_size=12)
BODIES = st.one_of(st.binary(max_size=500),
                   st.sampled_from([b"--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--", b"\xff" * 50,
                                    b"--x\r\n" * 40]))


def check(data: bytes, mail_from: str) -> None:
    try:
        request = parse_request(data)
    except MalformedMessage as exc:
        assert exc.reason == "malformed"
        return
    assert isinstance(request, Request)
    decision = policy.screen(request, mail_from, OWN)
    assert decision.reason in policy.SMTP_REPLIES
    if request.reply_to is not None:
        assert "\n" not in request.reply_to and "\r" not in request.reply_to and "@" in request.reply_to
    for mid in (request.message_id, *request.references):
        assert mid is None or (mid.startswith("<") and mid.endswith(">") and " " not in mid)
    assert choose_language({"en", "fa", "ru", "zh"}, hints=request.language_hints,
                           text=request.text_sample) in {"en", "fa", "ru", "zh"}


@given(st.binary(max_size=2000), st.text(max_size=40))
def test_raw_bytes(data, mail_from):
    check(data, mail_from)


@given(HEADERS, BODIES, st.sampled_from(["<>", "p@users.test", "MAILER-DAEMON", ""]),
       st.sampled_from([b"\r\n", b"\n"]))
def test_structured_messages(headers, body, mail_from, eol):
    data = b"".join(name.encode() + b": " + value.replace(b"\r", b"").replace(b"\n", b"") + eol
                    for name, value in headers) + eol + body
    check(data, mail_from)


JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
                       lambda inner: st.one_of(st.lists(inner, max_size=4),
                                               st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                       max_leaves=12)


@given(st.dictionaries(st.sampled_from(["version", "addresses", "other"]), JSONISH, max_size=3))
def test_arbitrary_config_documents(raw):
    try:
        parse_responder_config(raw, Path("/nonexistent/responder.json"))
    except ConfigError as exc:
        assert exc.problems


@given(st.sampled_from(list(campaign_entry())), JSONISH)
def test_one_bad_field_in_a_good_entry(field, value):
    entry = campaign_entry(attachment=False)
    entry[field] = value
    raw = json.loads(json.dumps({"version": 1, "addresses": {"get@example.org": entry}}))
    try:
        config = parse_responder_config(raw, Path("/nonexistent/responder.json"))
    except ConfigError as exc:
        assert all(p.key.startswith("addresses.get@example.org") for p in exc.problems)
    else:
        assert "get@example.org" in config.campaigns
