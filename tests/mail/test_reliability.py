"""Nothing lost, nothing sent twice: relay outages, restarts, broken mail, privacy."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections import Counter

import pytest

from onehop.mail.store import DB_NAME

from tests.helpers.waiting import wait_until

from .helpers import ADDRESS, drained, pending, request, send

pytestmark = pytest.mark.e2e


def message_ids(sink) -> Counter:
    return Counter(m.message["Message-ID"] for m in sink.messages)


async def test_relay_down_then_back(export, down_sink, start_responder, caplog):
    responder = await start_responder(export, down_sink.port)
    for i in range(3):
        assert (await send(responder.port, request(sender=f"p{i}@users.test"))).data == 250
    await wait_until(lambda: caplog.text.count("unavailable") >= 2, what="two failed attempts (with backoff)")
    assert await pending(responder) == 6
    down_sink.start()
    await wait_until(lambda: responder.sender.delivered == 6, what="the queued replies")
    assert await pending(responder) == 0  # nothing more to send
    ids = message_ids(down_sink)
    assert len(ids) == 6 and set(ids.values()) == {1}


async def test_restart_with_queued_replies(export, down_sink, start_responder, tmp_path):
    state = tmp_path / "state"
    first = await start_responder(export, down_sink.port, state_dir=state)
    for i in range(3):
        assert (await send(first.port, request(sender=f"p{i}@users.test"))).data == 250
    await first.stop()
    second = await start_responder(export, down_sink.port, state_dir=state)
    assert await pending(second) == 6
    down_sink.start()
    await wait_until(lambda: second.sender.delivered == 6, what="the replies queued before the restart")
    assert await pending(second) == 0  # nothing more to send
    assert set(message_ids(down_sink).values()) == {1} and len(message_ids(down_sink)) == 6
    await second.stop()
    third = await start_responder(export, down_sink.port, state_dir=state)
    assert await pending(third) == 0  # an empty outbox: nothing to send again
    assert len(down_sink.messages) == 6


async def test_the_documented_window_resends_the_same_message(export, sink, start_responder, tmp_path):
    """A crash after the relay's 250 but before our commit: the restart resends the reply
    with the same Message-ID (the one remaining duplicate window, see sender.py)."""
    state = tmp_path / "state"
    first = await start_responder(export, sink.port, state_dir=state)

    def crash(*args):
        raise RuntimeError("simulated crash between the relay's 250 and the commit")

    first.store.store.mark_sent = crash
    await send(first.port, request())
    await wait_until(lambda: len(sink.messages) == 1)
    await first.stop()
    assert first._tasks == []
    second = await start_responder(export, sink.port, state_dir=state)
    await wait_until(lambda: len(sink.messages) == 3)
    ids = message_ids(sink)
    assert sorted(ids.values()) == [1, 2]  # the links reply twice, as the same message
    for _ in range(200):  # the relay's 250 arrives before the sender's commit
        if await pending(second) == 0:
            break
        await asyncio.sleep(0.02)
    assert await pending(second) == 0


async def test_relay_refusals_retry_then_give_up(export, sink, start_responder, tmp_path):
    sink.handler.refuse = 451
    responder = await start_responder(export, sink.port, max_refusals=2, retry_initial=0.05, retry_max=0.1)
    await send(responder.port, request())
    await wait_until(lambda: sink.handler.refusals >= 4, what="each reply refused twice")
    assert await pending(responder) == 2  # 4xx: kept
    sink.handler.refuse = 554
    await wait_until(lambda: drained(responder), what="the replies given up")  # 5xx after 4xx
    assert responder.sender.delivered == 0 and not sink.messages
    sink.handler.refuse = None
    await send(responder.port, request(sender="p2@users.test"))
    await wait_until(lambda: len(sink.messages) == 2)


BROKEN = [
    b"\xff\xfe\xfd garbage that is not mail at all \x00\x01\r\n",
    b"From: \xff\xfe@\xfa\r\nSubject: \xc3\x28\xa0\xa1\r\nContent-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--",
    b"From: p@users.test\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n" + b"--b\r\n" * 3000,
    b"From: p@users.test\r\nX-Big: " + b"a" * 900 + b"\r\n" + (b" " + b"b" * 900 + b"\r\n") * 90 + b"\r\nbody",
    b"".join(b"X-Many-%d: v\r\n" % i for i in range(800)) + b"From: p@users.test\r\n\r\nbody",
    (b"From: p@users.test\r\nContent-Type: text/plain; charset=\"\xff\xfe\"\r\n"
     b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n"),
    b"From: =?utf-8?b?broken?= <p@users.test>\r\nSubject: =?unknown-8?q?x?=\r\n\r\n\xe4\xbd\xa0\xe5",
    b"\r\n\r\n\r\n",
]


async def test_broken_mail_is_refused_or_dropped_and_loses_nothing(export, down_sink, start_responder):
    responder = await start_responder(export, down_sink.port, max_message_size=512 * 1024)
    assert (await send(responder.port, request())).data == 250  # two replies queued, relay down
    codes = []
    for data in BROKEN:
        d = await send(responder.port, data, mail_from="p@users.test")
        codes.append(d.data)
    assert all(c in (250, 500, 550, 552) for c in codes), codes
    assert codes[0] == 550 and codes[4] == 550  # no From / too many header fields: a clear refusal
    assert not any(t.done() for t in responder._tasks)  # nothing crashed
    down_sink.start()
    await wait_until(lambda: drained(responder), what="the queued replies")
    assert [m.rcpt_tos for m in down_sink.messages].count(["person@users.test"]) == 2
    # broken requests that still named a single valid From could be answered; none were
    assert {tuple(m.rcpt_tos) for m in down_sink.messages} <= {("person@users.test",), ("p@users.test",)}


async def test_the_sender_address_is_never_logged_or_left_on_disk(export, sink, start_responder, tmp_path,
                                                                    caplog):
    caplog.set_level(logging.DEBUG)  # everything, including the libraries
    secret = "Very.Secret.Person"
    sender = f"{secret}@privacy.test"
    state = tmp_path / "state"
    responder = await start_responder(export, sink.port, state_dir=state, max_replies_per_day=2)
    for variant in (sender, sender.lower(), sender, f"Other <{sender}>"):
        await send(responder.port, request(sender=variant, headers={"Accept-Language": "fa"}), mail_from=sender)
    await send(responder.port, request(sender=sender, headers={"Precedence": "bulk"}), mail_from=sender)
    await send(responder.port, b"garbage", mail_from=sender)
    await wait_until(lambda: len(sink.messages) == 4)
    await wait_until(lambda: responder.sender.delivered == 4)
    await responder.stop()
    logs = caplog.text.lower()
    assert ADDRESS in logs  # the logs do say which of our addresses was written to
    for needle in (secret.lower(), "privacy.test"):
        assert needle not in logs
    for path in state.rglob("*"):
        if path.is_file():
            data = path.read_bytes().lower()
            assert secret.lower().encode() not in data, path.name
            assert b"privacy.test" not in data, path.name
    assert (state / DB_NAME).exists()


async def test_a_dead_render_worker_is_replaced_and_loses_nothing(export, sink, start_responder):
    responder = await start_responder(export, sink.port, render_processes=1)
    (pid,) = responder.renderer.worker_pids
    os.kill(pid, signal.SIGKILL)
    assert (await send(responder.port, request())).data == 250
    await wait_until(lambda: len(sink.messages) == 2, timeout=20, what="replies through a new worker")
    assert set(message_ids(sink).values()) == {1}


async def test_undeliverable_replies_expire_and_are_counted(export, down_sink, start_responder, tmp_path):
    responder = await start_responder(export, down_sink.port, queue_lifetime=0.3, housekeeping_interval=0.05)
    assert (await send(responder.port, request())).data == 250
    await wait_until(lambda: drained(responder), what="the replies to expire")
    await responder.stop()
    from onehop.mail.stats import collect
    (row,) = collect(tmp_path / "state").rows
    assert (row.answered, row.delivered, row.failed) == (1, 0, {"expired": 2})


def test_replies_are_grouped_by_request():
    from onehop.mail.sender import _by_request
    from onehop.mail.store import OutboxRow

    def row(i, at, address="get@example.org"):
        return OutboxRow(i, f"<{i}@x>", address, "links", "{}", None, at, 0, at)
    rows = [row(1, 5.0), row(2, 5.0), row(3, 5.0, "fa@example.org"), row(4, 6.0), row(6, 6.0)]
    assert [[r.id for r in g] for g in _by_request(rows)] == [[1, 2], [3], [4], [6]]
