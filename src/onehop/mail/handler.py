"""The SMTP side (aiosmtpd): recipients at RCPT time, requests at the end of DATA.

* RCPT: only configured addresses (``get@`` and ``get+tag@``) are accepted, anything
  else gets 550, so this is never a relay; 452 past a few recipients, 451 when busy.
* Size: aiosmtpd announces SIZE and refuses oversize mail during the dialogue (552 at
  MAIL FROM when the client declares it, 552 after DATA otherwise); lines over 1000
  bytes get 500. ``ResponderSMTP`` counts those refusals for the statistics.
* DATA: parse -> screen -> (DKIM, if required) -> global cap -> per recipient address:
  language, replies composed, and one outbox transaction that checks the per-sender
  limit and queues them. Only then the 250: a request is acknowledged once its replies
  are on disk. A store failure answers 451, so the sending server tries again later.

Logs name our address and the outcome, never the requester (nor the client's IP:
aiosmtpd's own logger is silenced by the service).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime

from aiosmtpd.smtp import SMTP

from ..errors import MailReason
from ..net.acceptgate import Admission
from . import policy
from .blobs import Blobs
from .config import ActiveConfig, Match
from .language import choose_language
from .options import RunOptions
from .parse import MalformedMessage, Request, parse_request
from .render import compose_replies
from .store import AsyncStore, QueuedReply, StoreError
from .templates import TemplateSet

log = logging.getLogger("onehop.mail")

UNKNOWN_ADDRESS = "(unknown)"   # stats row for recipients that are not ours
NO_ADDRESS = "(none)"           # stats row for refusals before any recipient

Verifier = Callable[[bytes, str], bool]


class ResponderSMTP(SMTP):
    """aiosmtpd's SMTP, counting the refusals it makes on its own (size, line length).

    ``admission`` is its place in the listener's connection cap (``onehop.net.acceptgate``),
    freed when the connection is lost.
    """

    admission: Admission | None = None

    def connection_lost(self, *args, **kwargs):
        if self.admission is not None:
            self.admission.release()
        return super().connection_lost(*args, **kwargs)

    async def push(self, status) -> None:
        if isinstance(status, str) and status.startswith(("552 Error", "500 Line too long")):
            reason = policy.OVERSIZE if status.startswith("552") else policy.MALFORMED
            rcpts = list(getattr(self.envelope, "rcpt_tos", None) or [])
            await self.event_handler.note_refusal(rcpts, reason)
        await super().push(status)


class RequestHandler:
    def __init__(self, *, options: RunOptions, templates: TemplateSet, store: AsyncStore, blobs: Blobs,
                 key: bytes, active: Callable[[], ActiveConfig], on_queued: Callable[[], None],
                 verifier: Verifier | None = None, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.templates = templates
        self.store = store
        self.blobs = blobs
        self.key = key
        self.active = active
        self.on_queued = on_queued
        self.verifier = verifier
        self.clock = clock
        self.window = policy.MinuteWindow(options.max_replies_per_minute)
        self.in_flight = 0

    # -- aiosmtpd hooks ---------------------------------------------------------------

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        match = self.active().config.lookup(address)
        reason = self._rcpt_refusal(match, envelope)
        if reason is not None:
            await self._count(match.campaign.address if match else UNKNOWN_ADDRESS, reason)
            return policy.SMTP_REPLIES[reason]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    def _rcpt_refusal(self, match: Match | None, envelope) -> str | None:
        if match is None:
            return policy.UNKNOWN_RECIPIENT
        if not match.campaign.has_content:
            return policy.NOTHING_TO_SEND
        if len(envelope.rcpt_tos) >= self.options.max_recipients:
            return policy.TOO_MANY_RECIPIENTS
        if self.window.full(self.clock()):
            return policy.BUSY
        return None

    async def handle_DATA(self, server, session, envelope):
        self.in_flight += 1
        try:
            return await self._data(envelope)
        except StoreError as exc:
            log.error("cannot queue a request's replies (answered 451, the sender will retry): %s", exc)
            return policy.SMTP_REPLIES[policy.STORE_ERROR]
        finally:
            self.in_flight -= 1

    async def handle_exception(self, error: Exception) -> str:
        # Only the type and where: an exception's text could quote the message.
        where = "".join(traceback.format_tb(error.__traceback__)[-3:])
        log.error("SMTP session error %s at\n%s", type(error).__name__, where)
        return "451 4.3.0 Temporary local problem, please try again later"

    async def note_refusal(self, rcpts: list[str], reason: str) -> None:
        for address in self._our_addresses(rcpts) or [NO_ADDRESS]:
            await self._count(address, reason)
        log.info("refused a request to %s: %s", ", ".join(self._our_addresses(rcpts)) or NO_ADDRESS, reason)

    # -- a request --------------------------------------------------------------------

    async def _data(self, envelope) -> str:
        active = self.active()
        matches = [m for m in (active.config.lookup(r) for r in envelope.rcpt_tos)
                   if m is not None and m.campaign.has_content]
        addresses = [m.campaign.address for m in matches]
        if not matches:  # the configuration changed since RCPT
            return await self._refuse([UNKNOWN_ADDRESS], policy.UNKNOWN_RECIPIENT)
        try:
            request = parse_request(bytes(envelope.original_content or b""))
        except MalformedMessage as exc:
            return await self._refuse(addresses, policy.MALFORMED, exc.detail)
        decision = policy.screen(request, envelope.mail_from or "", active.config.own_addresses)
        if decision.answer and self.options.require_dkim:
            decision = policy.dkim_decision(True, await self._dkim_passes(envelope, request))
        if not decision.answer:
            return await self._refuse(addresses, decision.reason)
        now = self.clock()
        if (await self.store.run(self.store.store.pending)) >= self.options.max_queued \
                or not self.window.allow(now):
            return await self._refuse(addresses, policy.BUSY)
        for match in matches:
            await self._queue(match, request, active, now)
        self.on_queued()
        return policy.SMTP_REPLIES[policy.ANSWER]

    async def _dkim_passes(self, envelope, request: Request) -> bool:
        if self.verifier is None or request.reply_to is None:
            return False
        domain = request.reply_to.rpartition("@")[2]
        raw = bytes(envelope.original_content or b"")
        return await asyncio.to_thread(self.verifier, raw, domain)

    async def _refuse(self, addresses: list[str], reason: MailReason, detail: str = "") -> str:
        for address in addresses:
            await self._count(address, reason)
        log.info("no reply to a request to %s: %s%s", ", ".join(addresses), reason,
                 f" ({detail})" if detail else "")
        return policy.SMTP_REPLIES[reason]

    async def _count(self, address: str, reason: str) -> None:
        await self.store.run(self.store.store.count_event, address, f"rejected:{reason}", self.clock())

    async def _queue(self, match: Match, request: Request, active: ActiveConfig, now: float) -> None:
        campaign = match.campaign
        assert request.reply_to is not None  # screen() refused the others
        language = choose_language(self.templates.supported, tag=match.tag, configured=campaign.language,
                                   hints=request.language_hints, text=request.text_sample)
        domain = self.options.dkim.domain if self.options.dkim else campaign.address.rpartition("@")[2]
        specs = compose_replies(
            campaign, to=request.reply_to, language=language,
            date=format_datetime(datetime.fromtimestamp(now, UTC)),
            message_ids=[f"<{secrets.token_hex(16)}@{domain}>" for _ in range(2)],
            in_reply_to=request.message_id, references=request.references,
            attachment_sha256=active.blobs.get(campaign.address))
        replies = [QueuedReply(s.message_id, s.kind, s.to_json(), s.attachment_sha256) for s in specs]
        sender = policy.sender_hash(self.key, request.reply_to)
        queued = await self.store.run(self._enqueue, sender, now, campaign.address, replies)
        if queued:
            log.info("queued %s (%s) for a request to %s", "+".join(s.kind for s in specs), language,
                     campaign.address)
        else:
            log.info("no reply to a request to %s: %s", campaign.address, policy.RATE_LIMIT)

    def _enqueue(self, sender: bytes, now: float, address: str, replies: list[QueuedReply]) -> bool:
        """On the store thread (serialized with blob collection): the blobs must exist."""
        for reply in replies:
            if reply.blob and not self.blobs.exists(reply.blob):
                raise StoreError(f"attachment snapshot {reply.blob} is missing")
        return self.store.store.enqueue(sender, now, self.options.max_replies_per_day, address, replies)

    def _our_addresses(self, rcpts: list[str]) -> list[str]:
        config = self.active().config
        return [m.campaign.address for m in (config.lookup(r) for r in rcpts) if m is not None]
