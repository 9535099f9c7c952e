"""Pure parts: request parsing, who gets a reply, the language rule."""

from __future__ import annotations

import pytest

from onehop.mail import policy
from onehop.mail.language import choose_language, detect_script, primary
from onehop.mail.parse import MAX_HEADER_FIELDS, MalformedMessage, parse_request

from .helpers import ADDRESS, request

OWN = frozenset({ADDRESS, "farsi@example.org"})
SUPPORTED = {"en", "fa", "ru", "zh"}


def decide(data: bytes, mail_from: str = "person@users.test") -> str:
    return policy.screen(parse_request(data), mail_from, OWN).reason


def test_a_plain_request_is_answered():
    r = parse_request(request(sender='"A. Person" <A.Person@Users.TEST>'))
    assert r.reply_to == "A.Person@users.test"
    assert r.message_id.startswith("<req-") and r.references == ()
    assert decide(request()) == policy.ANSWER


@pytest.mark.parametrize("headers, reason", [
    ({"Auto-Submitted": "auto-replied"}, policy.AUTO_SUBMITTED),
    ({"Auto-Submitted": "auto-generated; owner-email=x@y.test"}, policy.AUTO_SUBMITTED),
    ({"Auto-Submitted": "No"}, policy.ANSWER),
    ({"Precedence": "bulk"}, policy.BULK),
    ({"Precedence": "JUNK"}, policy.BULK),
    ({"Precedence": "list"}, policy.BULK),
    ({"List-Id": "<news.example.com>"}, policy.BULK),
    ({"List-Unsubscribe": "<mailto:u@x.test>"}, policy.BULK),
    ({"X-Autoreply": "yes"}, policy.AUTO_SUBMITTED),
    ({"X-Autorespond": "on vacation"}, policy.AUTO_SUBMITTED),
    ({"X-Auto-Response-Suppress": "All"}, policy.AUTO_SUBMITTED),
    ({"X-Auto-Response-Suppress": "DR, RN"}, policy.ANSWER),
])
def test_auto_and_bulk_mail_is_never_answered(headers, reason):
    assert decide(request(headers=headers)) == reason


@pytest.mark.parametrize("mail_from, sender, reason", [
    ("<>", "person@users.test", policy.BOUNCE),
    ("", "person@users.test", policy.BOUNCE),
    ("MAILER-DAEMON@mx.users.test", "person@users.test", policy.BOUNCE),
    ("person@users.test", "Mail Delivery System <mailer-daemon@users.test>", policy.BOUNCE),
    ("person@users.test", "postmaster@users.test", policy.BOUNCE),
    ("person@users.test", "no-reply@service.test", policy.BOUNCE),
    ("bounce-123-abc@lists.test", "person@users.test", policy.BOUNCE),
    ("person@users.test", "get@example.org", policy.OWN_ADDRESS),
    ("person@users.test", "Get+FA@Example.org", policy.OWN_ADDRESS),
    ("get@example.org", "person@users.test", policy.OWN_ADDRESS),
])
def test_bounces_and_loops(mail_from, sender, reason):
    assert decide(request(sender=sender), mail_from) == reason


@pytest.mark.parametrize("sender", [
    "", "not an address", "a@b", "one@users.test, two@users.test", "x@-bad-.test",
    "\"quoted local\"@users.test", "user@users.test\r\nBcc: victim@else.test", "ü@users.test",
])
def test_no_single_well_formed_from_address(sender):
    data = request(sender=sender) if "\r\n" not in sender else request().replace(
        b"From: Person <person@users.test>", b"From: user@users.test\r\n\tBcc: victim@else.test")
    r = parse_request(data)
    if "\r\n" in sender:  # a folded header: still one address or none, never two lines
        assert r.reply_to in (None, "user@users.test")
        return
    assert r.reply_to is None
    assert policy.screen(r, "person@users.test", OWN).reason == policy.NO_SENDER


def test_two_from_headers():
    data = request().replace(b"To:", b"From: other@users.test\r\nTo:")
    assert decide(data) == policy.NO_SENDER


def test_message_ids_are_checked_before_we_echo_them():
    data = request(headers={"References": "<a@x.test> junk <b@x.test> <bad id@x> <c@x.test>"})
    data = data.replace(b"Message-ID: <req-", b"Message-ID: <req-\x01")
    r = parse_request(data)
    assert r.message_id is None
    assert r.references == ("<a@x.test>", "<b@x.test>", "<c@x.test>")


@pytest.mark.parametrize("data, detail", [
    (b"", "empty"),
    (b"\r\n\r\n", "empty"),
    (b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADER_FIELDS + 1)) + b"\r\nbody", "header fields"),
    (b"Subject: " + b"a" * 70000 + b"\r\n\r\nbody", "header block"),
])
def test_malformed(data, detail):
    with pytest.raises(MalformedMessage, match=detail) as info:
        parse_request(data)
    assert info.value.reason == "malformed"


def test_garbage_and_non_utf8_parse_without_crashing():
    r = parse_request(b"\xff\xfe\x00garbage\r\n\x80\x81: \xc3\x28\r\n\r\n\xff")
    assert r.reply_to is None
    r = parse_request(request(body="Привет", charset="koi8-r", subject="=?bogus?Q?x?="))
    assert "Привет" in r.text_sample
    r = parse_request(request(body="hello", charset="x-unknown-charset"))
    assert "hello" in r.text_sample


def test_language_hints_follow_q_values():
    r = parse_request(request(headers={"Accept-Language": "de;q=0.2, ru;q=0.9, fa", "Content-Language": "zh-CN"}))
    assert r.language_hints == ("zh-cn", "fa", "ru", "de")


# -- rate limiting ----------------------------------------------------------------------

def test_sender_normalization_and_keyed_hash():
    n = policy.normalize_address
    assert n("Some.One+tag@GMail.com") == n("someone@googlemail.com") == "someone@gmail.com"
    assert n("a.b+x@users.test") == "a.b@users.test" != n("ab@users.test")
    k1, k2 = b"k" * 32, b"j" * 32
    assert policy.sender_hash(k1, "A@users.test") == policy.sender_hash(k1, "a+1@users.test")
    assert policy.sender_hash(k1, "a@users.test") != policy.sender_hash(k2, "a@users.test")
    assert len(policy.sender_hash(k1, "a@users.test")) == 32


def test_minute_window():
    w = policy.MinuteWindow(3)
    assert [w.allow(t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert w.full(59.9) and not w.full(60.0)
    assert w.allow(60.5)


def test_every_reason_has_an_smtp_answer():
    reasons = [v for k, v in vars(policy).items() if k.isupper() and isinstance(v, str) and k != "SMTP_REPLIES"
               and not k.startswith("_")]
    for reason in reasons:
        reply = policy.SMTP_REPLIES[reason]
        assert reply[:3].isdigit() and reply[3] == " "
    # silent drops look exactly like an answer: nothing to learn from the dialogue
    assert policy.SMTP_REPLIES[policy.RATE_LIMIT] == policy.SMTP_REPLIES[policy.ANSWER]


# -- language ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, expected", [
    ({}, "en"),
    ({"tag": "fa"}, "fa"),
    ({"tag": "fa", "configured": "ru"}, "fa"),
    ({"tag": "xx", "configured": "ru"}, "ru"),
    ({"tag": "news", "configured": "zh-Hans"}, "zh"),
    ({"configured": "fa_IR", "hints": ["ru"]}, "fa"),
    ({"configured": "ar", "hints": ["de", "ru"]}, "ru"),
    ({"hints": ["zh-tw"], "text": "سلام"}, "zh"),
    ({"text": "سلام، لطفا برنامه را بفرستید"}, "fa"),
    ({"text": "Привет, пришлите программу"}, "ru"),
    ({"text": "你好，请发给我"}, "zh"),
    ({"text": "hello ж"}, "en"),
    ({"configured": "de", "text": "hello"}, "en"),
])
def test_language_rule(kwargs, expected):
    assert choose_language(SUPPORTED, **kwargs) == expected


def test_language_helpers():
    assert primary("zh-Hans") == "zh" and primary("FA_ir") == "fa"
    assert primary("") is None and primary("123") is None and primary("ü") is None
    assert detect_script("Hello привет 你好你好你好你") == "zh"
    assert choose_language({"fa", "ru"}) == "fa"  # no English: the first available
