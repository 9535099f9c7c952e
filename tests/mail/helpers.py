"""Helpers for the responder tests: an exported config, a sink relay (aiosmtpd), request
messages and an smtplib client (run in a thread, off the test's event loop)."""

from __future__ import annotations

import asyncio
import json
import smtplib
import threading
import time
from dataclasses import dataclass, field, replace
from email import message_from_bytes
from email.message import Message
from email.policy import default as default_policy
from pathlib import Path

from aiosmtpd.controller import Controller

from onehop.mail.options import RunOptions
from tests.helpers.net import free_port

ADDRESS = "get@example.org"
FA_ADDRESS = "farsi@example.org"
LINKS = ["https://dl.example.net/a/onehop.zip", "https://mirror.example.com/b/onehop.zip?x=1&y=2"]
BUILD = b"PK\x03\x04" + bytes(range(256)) * 64 + b"\xff\xfe onehop build"
BUILD_NAME = "onehop-alpha.zip"


def campaign_entry(campaign_id: str = "c1", *, language=None, links=LINKS, attachment: bool = True) -> dict:
    return {"campaign_id": campaign_id, "channel_id": "ch-" + campaign_id, "channel_name": "Alpha <&> channel",
            "sponsor_id": "sp1", "sponsor_name": "Sponsor One", "language": language, "links": list(links),
            "attachment": ({"path": f"builds/{campaign_id}.pyz", "filename": BUILD_NAME,
                            "content_type": "application/zip"} if attachment else None)}


def write_export(root: Path, addresses: dict[str, dict] | None = None, build: bytes = BUILD) -> Path:
    """DIR/mail/responder.json (+ builds) as `onehop network export` writes them."""
    if addresses is None:
        addresses = {ADDRESS: campaign_entry("c1"), FA_ADDRESS: campaign_entry("c2", language="fa")}
    mail = root / "mail"
    (mail / "builds").mkdir(parents=True, exist_ok=True)
    for entry in addresses.values():
        if isinstance(entry, dict) and isinstance(entry.get("attachment"), dict):
            (mail / entry["attachment"]["path"]).write_bytes(build)
    path = mail / "responder.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": 1, "addresses": addresses}, indent=2), encoding="utf-8")
    tmp.replace(path)
    return path


@dataclass
class Captured:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    at: float

    @property
    def message(self) -> Message:
        return message_from_bytes(self.data, policy=default_policy)


class SinkHandler:
    def __init__(self) -> None:
        self.messages: list[Captured] = []
        self.lock = threading.Lock()
        self.refuse: int | None = None  # answer DATA with this code instead of 250
        self.refusals = 0

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            self.refusals += 1
            return f"{self.refuse} refused by the test"
        with self.lock:
            self.messages.append(Captured(envelope.mail_from, list(envelope.rcpt_tos),
                                          bytes(envelope.original_content), time.monotonic()))
        return "250 OK queued"


@dataclass
class Sink:
    """A relay on loopback that keeps what it receives; ``stop``/``start`` on one port."""

    port: int = field(default_factory=free_port)
    handler: SinkHandler = field(default_factory=SinkHandler)
    controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[Captured]:
        with self.handler.lock:
            return list(self.handler.messages)


def dnsfunc_for(records: dict[bytes, bytes]):
    def dnsfunc(name, timeout=5):
        return records.get(name)
    return dnsfunc


def make_options(config: Path, relay_port: int, state_dir: Path, **overrides) -> RunOptions:
    base = RunOptions(config_path=config, listen=("127.0.0.1", 0), relay=("127.0.0.1", relay_port),
                      state_dir=state_dir, hostname="responder.test", relay_backoff_initial=0.05,
                      relay_backoff_max=0.3, retry_initial=0.1, retry_max=0.5, reload_interval=0.1,
                      relay_timeout=5.0, smtp_timeout=10.0, render_processes=0)
    return replace(base, **overrides)


def request(sender: str = "Person <person@users.test>", to: str = ADDRESS, subject: str = "please",
            body: str = "send me the app", headers: dict | None = None, charset: str = "utf-8") -> bytes:
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}",
             "Message-ID: <req-" + str(time.monotonic_ns()) + "@users.test>",
             "Date: Mon, 01 Jan 2024 10:00:00 +0000", "MIME-Version: 1.0",
             f"Content-Type: text/plain; charset={charset}", "Content-Transfer-Encoding: 8bit"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    try:
        encoded = body.encode(charset)
    except LookupError:  # a charset name Python does not know (the point of some tests)
        encoded = body.encode("utf-8")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + encoded + b"\r\n"


@dataclass
class Dialogue:
    """SMTP codes of one transaction: MAIL, each RCPT, DATA (None when not reached)."""

    mail: int
    rcpts: list[int]
    data: int | None
    data_text: str = ""


def smtp_dialogue(port: int, mail_from: str, rcpts: list[str], data: bytes, *, size: int | None = None) -> Dialogue:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.ehlo("client.test")
        options = [f"SIZE={size}"] if size is not None else []
        mail_code, _ = client.mail(mail_from, options)
        if mail_code != 250:
            return Dialogue(mail_code, [], None)
        codes = [client.rcpt(r)[0] for r in rcpts]
        if not any(c == 250 for c in codes):
            client.rset()
            return Dialogue(mail_code, codes, None)
        try:
            code, text = client.data(data)
        except smtplib.SMTPServerDisconnected:
            return Dialogue(mail_code, codes, -1)
        return Dialogue(mail_code, codes, code, text.decode("utf-8", "replace"))


async def send(port: int, data: bytes, *, mail_from: str = "person@users.test",
               rcpts: list[str] | None = None, size: int | None = None) -> Dialogue:
    return await asyncio.to_thread(smtp_dialogue, port, mail_from, rcpts or [ADDRESS], data, size=size)


async def pending(responder) -> int:
    """Replies in the responder's outbox: none left means it will send nothing more."""
    return await responder.store.run(responder.store.store.pending)


async def drained(responder) -> bool:
    return await pending(responder) == 0
