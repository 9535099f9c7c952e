"""The responder on loopback: smtplib sends requests, a sink relay (aiosmtpd) captures
the replies."""

from __future__ import annotations

import asyncio
import json
import logging

import dkim
import pytest

from onehop.mail.dkimtools import sign
from onehop.mail.stats import collect

from .helpers import (
    ADDRESS,
    BUILD,
    BUILD_NAME,
    FA_ADDRESS,
    LINKS,
    campaign_entry,
    dnsfunc_for,
    pending,
    request,
    send,
    write_export,
)
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.e2e


def bodies(captured) -> tuple[str, str]:
    msg = captured.message
    return msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()


def by_kind(messages) -> dict[str, object]:
    return {("attachment" if m.message.get_content_type() == "multipart/mixed" else "links"): m for m in messages}


def rejected(state_dir) -> dict[tuple[str, str], int]:
    report = collect(state_dir)
    return {(row.address, reason): n for row in report.rows for reason, n in row.rejected.items()}


async def test_a_request_gets_links_then_the_build(export, sink, start_responder, tmp_path):
    responder = await start_responder(export, sink.port)
    d = await send(responder.port, request(subject="hi"))
    assert (d.mail, d.rcpts, d.data) == (250, [250], 250)
    await wait_until(lambda: len(sink.messages) == 2, what="two replies")
    links, attachment = sink.messages
    for m in (links, attachment):
        assert m.mail_from == "<>" and m.rcpt_tos == ["person@users.test"]  # null return path: no loops
        assert m.message["From"] == ADDRESS and m.message["To"] == "person@users.test"
        assert m.message["Auto-Submitted"] == "auto-replied" and m.message["In-Reply-To"].startswith("<req-")
        assert "DKIM-Signature" not in m.message
    assert links.message.get_content_type() == "multipart/alternative"
    text, html = bodies(links)
    assert all(link in text for link in LINKS) and 'href="https://dl.example.net/a/onehop.zip"' in html
    assert attachment.message.get_content_type() == "multipart/mixed"
    (part,) = attachment.message.iter_attachments()
    assert part.get_filename() == BUILD_NAME and part.get_content() == BUILD
    assert links.message["Message-ID"] != attachment.message["Message-ID"]
    await wait_until(lambda: responder.sender.delivered == 2)
    report = collect(tmp_path / "state")
    (row,) = report.rows
    assert (row.address, row.answered, row.delivered, report.queued) == (ADDRESS, 1, 2, 0)


async def test_replies_are_dkim_signed(export, sink, start_responder, dkim_material):
    _, key, record = dkim_material
    responder = await start_responder(export, sink.port, dkim=key, render_processes=1)  # a worker process
    await send(responder.port, request())
    await wait_until(lambda: len(sink.messages) == 2)
    dns = dnsfunc_for({b"mail2024._domainkey.example.org.": record})
    for m in sink.messages:
        assert m.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org")
        assert dkim.verify(m.data, dnsfunc=dns)
        assert m.message["Message-ID"].endswith("@example.org>")


@pytest.mark.parametrize("rcpt, req, lang, word", [
    ("get+fa@example.org", request(to="get+fa@example.org"), "fa", "سلام"),
    (FA_ADDRESS, request(to=FA_ADDRESS), "fa", "سلام"),
    (ADDRESS, request(body="Здравствуйте, пришлите программу"), "ru", "Здравствуйте"),
    (ADDRESS, request(headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}), "zh", "您好"),
    (ADDRESS, request(subject="=?utf-8?b?5L2g5aW9?=", body="hi"), "zh", "您好"),
    (ADDRESS, request(), "en", "Hello"),
])
async def test_language_selection(export, sink, start_responder, rcpt, req, lang, word):
    responder = await start_responder(export, sink.port)
    assert (await send(responder.port, req, rcpts=[rcpt])).data == 250
    await wait_until(lambda: len(sink.messages) == 2)
    for m in sink.messages:
        assert m.message["Content-Language"] == lang
        assert bodies(m)[0].startswith(word)
        assert m.message["From"] == (FA_ADDRESS if rcpt == FA_ADDRESS else ADDRESS)


async def test_unknown_recipients_are_refused_at_rcpt_so_it_is_no_relay(export, sink, start_responder, tmp_path):
    responder = await start_responder(export, sink.port)
    d = await send(responder.port, request(), rcpts=["other@example.org", "victim@gmail.com",
                                                      "get@example.org.evil.test"])
    assert d.rcpts == [550, 550, 550] and d.data is None
    d = await send(responder.port, request(), rcpts=["victim@gmail.com", ADDRESS])
    assert d.rcpts == [550, 250] and d.data == 250
    await wait_until(lambda: len(sink.messages) == 2)
    assert all(m.rcpt_tos == ["person@users.test"] for m in sink.messages)  # never victim@gmail.com
    await responder.stop()
    assert rejected(tmp_path / "state") == {("(unknown)", "unknown_recipient"): 4}


async def test_an_address_with_nothing_to_send_is_refused(tmp_path, sink, start_responder):
    config = write_export(tmp_path / "x", {ADDRESS: campaign_entry(links=[], attachment=False)})
    responder = await start_responder(config, sink.port)
    d = await send(responder.port, request())
    assert d.rcpts == [550]


async def test_oversize_requests_are_refused_during_the_dialogue(export, sink, start_responder, tmp_path):
    responder = await start_responder(export, sink.port, max_message_size=4096)
    d = await send(responder.port, request(), size=10_000)  # declared: refused at MAIL FROM
    assert d.mail == 552
    d = await send(responder.port, request(body="x" * 900 + "\r\n" + ("y" * 900 + "\r\n") * 10))
    assert d.rcpts == [250] and d.data == 552
    d = await send(responder.port, request(body="z" * 3000))  # one line over 1000 bytes
    assert d.data == 500
    assert (await send(responder.port, request())).data == 250  # the server is fine afterwards
    await wait_until(lambda: len(sink.messages) == 2)
    await responder.stop()
    assert rejected(tmp_path / "state") == {("(none)", "oversize"): 1, (ADDRESS, "oversize"): 1,
                                            (ADDRESS, "malformed"): 1}


async def test_rate_limit_per_sender_and_day(export, sink, start_responder, tmp_path):
    responder = await start_responder(export, sink.port, max_replies_per_day=3)
    senders = ["person@users.test", "Person@USERS.test", "person+x@users.test", "person@users.test"]
    for s in senders + ["person@users.test"]:
        d = await send(responder.port, request(sender=s))
        assert d.data == 250  # the same answer either way: nothing to learn from it
    assert (await send(responder.port, request(sender="someone.else@users.test"))).data == 250
    await wait_until(lambda: responder.sender.delivered == 8, what="4 answered requests")
    assert await pending(responder) == 0 and len(sink.messages) == 8  # and nothing more to send
    await responder.stop()
    assert rejected(tmp_path / "state") == {(ADDRESS, "rate_limit"): 2}


@pytest.mark.parametrize("headers, mail_from, sender", [
    ({"Auto-Submitted": "auto-replied"}, "robot@users.test", "robot@users.test"),
    ({"Precedence": "bulk"}, "news@users.test", "news@users.test"),
    ({"List-Id": "<list.users.test>"}, "list@users.test", "list@users.test"),
    ({"X-Autoreply": "yes"}, "away@users.test", "away@users.test"),
    ({}, "<>", "person@users.test"),
    ({}, "MAILER-DAEMON@users.test", "MAILER-DAEMON@users.test"),
    ({}, "person@users.test", "get@example.org"),
])
async def test_auto_mail_is_never_answered(export, sink, start_responder, caplog, headers, mail_from, sender):
    caplog.set_level(logging.INFO, logger="onehop.mail")
    responder = await start_responder(export, sink.port)
    d = await send(responder.port, request(sender=sender, headers=headers), mail_from=mail_from)
    assert d.data == 250
    # decided before the 250: refused, nothing queued (so nothing can be sent)
    assert caplog.text.count("no reply to a request") == 1
    assert await pending(responder) == 0 and sink.messages == []


async def test_our_own_reply_coming_back_does_not_loop(export, sink, start_responder, caplog):
    caplog.set_level(logging.INFO, logger="onehop.mail")
    responder = await start_responder(export, sink.port)
    await send(responder.port, request())
    await wait_until(lambda: len(sink.messages) == 2)
    for reply in sink.messages:  # a misrouted reply delivered to us: refused, nothing sent
        d = await send(responder.port, reply.data, mail_from="<>")
        assert d.data == 250
        d = await send(responder.port, reply.data, mail_from="person@users.test")
        assert d.data == 250
    # each decided before its 250: refused, nothing queued (so nothing can be sent)
    assert caplog.text.count("no reply to a request") == 4
    assert await pending(responder) == 0 and len(sink.messages) == 2


async def test_global_cap_answers_451(export, sink, start_responder):
    responder = await start_responder(export, sink.port, max_replies_per_minute=2)
    codes = []
    for i in range(3):
        d = await send(responder.port, request(sender=f"p{i}@users.test"))
        codes.append((d.rcpts, d.data))
    assert codes == [([250], 250), ([250], 250), ([451], None)]


async def test_required_dkim_drops_unsigned_and_foreign_signed_requests(export, sink, start_responder,
                                                                          dkim_material, tmp_path):
    _, key, record = dkim_material
    dns = dnsfunc_for({b"mail2024._domainkey.example.org.": record})
    responder = await start_responder(export, sink.port, require_dkim=True, dnsfunc=dns)
    unsigned = request(sender="friend@example.org")
    d = await send(responder.port, unsigned, mail_from="friend@example.org")
    assert d.data == 550 and "5.7.20" in d.data_text
    foreign = sign(request(sender="friend@users.test"), key)  # d=example.org, From users.test
    assert (await send(responder.port, foreign, mail_from="friend@users.test")).data == 550
    tampered = sign(unsigned, key).replace(b"send me the app", b"send me the ap")
    assert (await send(responder.port, tampered, mail_from="friend@example.org")).data == 550
    assert (await send(responder.port, sign(unsigned, key), mail_from="friend@example.org")).data == 250
    await wait_until(lambda: len(sink.messages) == 2)
    assert sink.messages[0].rcpt_tos == ["friend@example.org"]
    await responder.stop()
    assert rejected(tmp_path / "state") == {(ADDRESS, "dkim_fail"): 3}


async def test_the_config_is_reloaded_and_a_broken_one_is_ignored(tmp_path, sink, start_responder, caplog):
    caplog.set_level(logging.INFO, logger="onehop.mail")
    config = write_export(tmp_path / "x", {ADDRESS: campaign_entry()})
    responder = await start_responder(config, sink.port)
    assert (await send(responder.port, request(), rcpts=["new@example.org"])).rcpts == [550]
    write_export(tmp_path / "x", {ADDRESS: campaign_entry(), "new@example.org": campaign_entry("c9")},
                 build=b"PK new build")
    await wait_until(lambda: "new@example.org" in responder.active.config.campaigns, what="reload")
    assert (await send(responder.port, request(), rcpts=["new@example.org"])).data == 250
    config.write_text(json.dumps({"version": 1, "addresses": {"broken": {}}}))
    await wait_until(lambda: "keeping the last good configuration" in caplog.text, what="the broken config")
    assert "addresses.broken" in caplog.text
    assert (await send(responder.port, request(sender="x@users.test"), rcpts=["new@example.org"])).data == 250
    await wait_until(lambda: len(sink.messages) == 4)
    builds = {part.get_content() for m in sink.messages for part in m.message.iter_attachments()}
    assert builds == {b"PK new build"}


async def test_a_replaced_build_is_picked_up_without_a_config_change(tmp_path, sink, start_responder):
    config = write_export(tmp_path / "x", {ADDRESS: campaign_entry()}, build=b"PK one")
    responder = await start_responder(config, sink.port)
    first = responder.active.blobs[ADDRESS]
    tmp = config.parent / "builds" / "c1.tmp"
    tmp.write_bytes(b"PK two")
    tmp.replace(config.parent / "builds" / "c1.pyz")
    await wait_until(lambda: responder.active.blobs[ADDRESS] != first, what="the new build")
    await send(responder.port, request())
    await wait_until(lambda: len(sink.messages) == 2)
    (part,) = by_kind(sink.messages)["attachment"].message.iter_attachments()
    assert part.get_content() == b"PK two"


def self_signed(tmp_path) -> tuple:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "responder.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def tls_dialogue(port: int, data: bytes, starttls: bool) -> tuple[int, int | None]:
    import smtplib
    import ssl
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.ehlo("client.test")
        assert client.has_extn("starttls")
        if starttls:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            client.starttls(context=context)
            client.ehlo("client.test")
        code, _ = client.mail("person@users.test")
        if code != 250:
            return code, None
        client.rcpt(ADDRESS)
        return code, client.data(data)[0]


async def test_requests_can_be_required_to_use_starttls(export, sink, start_responder, tmp_path):
    cert, key = self_signed(tmp_path)
    responder = await start_responder(export, sink.port, tls_cert=cert, tls_key=key, require_tls=True)
    assert await asyncio.to_thread(tls_dialogue, responder.port, request(), False) == (530, None)
    assert await asyncio.to_thread(tls_dialogue, responder.port, request(), True) == (250, 250)
    await wait_until(lambda: len(sink.messages) == 2)
