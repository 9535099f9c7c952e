"""Pure: who gets a reply. Default-deny, one decision type.

``screen`` looks at a parsed request and its envelope sender and refuses everything an
auto-responder must never answer (RFC 3834): bounces (null return path, mailer-daemon
and friends), auto-submitted mail, bulk and mailing-list mail, mail from our own
addresses (loops), and mail without one well-formed From address. ``dkim_decision``
adds the optional inbound DKIM requirement. The per-sender daily limit is decided
inside the outbox transaction (store) from ``sender_hash``, so two concurrent requests
cannot both slip under it; the global per-minute cap is ``MinuteWindow``.

Every refusal says how the SMTP dialogue answers it: a clear rejection (5xx) where the
client can learn something, or a silent 250 where any answer could start a loop or leak
whether an address asked before (auto mail, rate limit).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from dataclasses import dataclass

from ..errors import MailReason
from .parse import Request

# Stable reasons, as counted by ``onehop mail stats``.
ANSWER = MailReason.ANSWER
UNKNOWN_RECIPIENT = MailReason.UNKNOWN_RECIPIENT
NOTHING_TO_SEND = MailReason.NOTHING_TO_SEND
TOO_MANY_RECIPIENTS = MailReason.TOO_MANY_RECIPIENTS
BUSY = MailReason.BUSY
OVERSIZE = MailReason.OVERSIZE
MALFORMED = MailReason.MALFORMED
NO_SENDER = MailReason.NO_SENDER
BOUNCE = MailReason.BOUNCE
AUTO_SUBMITTED = MailReason.AUTO_SUBMITTED
BULK = MailReason.BULK_OR_LIST
OWN_ADDRESS = MailReason.OWN_ADDRESS
DKIM_FAIL = MailReason.DKIM_FAIL
RATE_LIMIT = MailReason.RATE_LIMIT
STORE_ERROR = MailReason.STORE_ERROR

#: The SMTP answer for each refusal ("250" means: accepted and silently dropped).
SMTP_REPLIES = {
    ANSWER: "250 2.0.0 OK",
    UNKNOWN_RECIPIENT: "550 5.1.1 No such mailbox here",
    NOTHING_TO_SEND: "550 5.2.1 This mailbox is not in service",
    TOO_MANY_RECIPIENTS: "452 4.5.3 Too many recipients",
    BUSY: "451 4.7.1 Busy, please try again later",
    OVERSIZE: "552 5.3.4 Message too big",
    MALFORMED: "550 5.6.0 The message could not be read",
    NO_SENDER: "550 5.1.7 The message needs exactly one valid From address",
    BOUNCE: "250 2.0.0 OK",
    AUTO_SUBMITTED: "250 2.0.0 OK",
    BULK: "250 2.0.0 OK",
    OWN_ADDRESS: "250 2.0.0 OK",
    DKIM_FAIL: "550 5.7.20 No passing DKIM signature for the From domain",
    RATE_LIMIT: "250 2.0.0 OK",
    STORE_ERROR: "451 4.3.0 Temporary local problem, please try again later",
}

_DAEMON_LOCALS = frozenset({
    "mailer-daemon", "mailerdaemon", "postmaster", "noreply", "no-reply", "no_reply", "donotreply",
    "do-not-reply", "do_not_reply", "bounce", "bounces", "nobody", "daemon", "root", "abuse",
    "listserv", "majordomo", "autoreply", "auto-reply", "autoresponder", "notifications",
})
_DAEMON_PREFIXES = ("bounce-", "bounces-", "bounce+", "bounces+", "owner-", "noreply-", "no-reply-",
                    "mailer-daemon")
_DAEMON_SUFFIXES = ("-request", "-bounces", "-owner", "-noreply", "-no-reply")
_BULK_PRECEDENCE = frozenset({"bulk", "list", "junk", "auto_reply", "auto-reply"})


@dataclass(frozen=True)
class Decision:
    reason: MailReason

    @property
    def answer(self) -> bool:
        return self.reason == ANSWER

    @property
    def smtp_reply(self) -> str:
        return SMTP_REPLIES[self.reason]


def screen(request: Request, mail_from: str, own_addresses: frozenset[str]) -> Decision:
    """Everything that can be decided from the message and envelope alone."""
    envelope = mail_from.strip().strip("<>").lower()
    if not envelope or is_daemon_address(envelope):
        return Decision(BOUNCE)
    if (request.auto_submitted not in (None, "", "no")) or request.auto_headers:
        return Decision(AUTO_SUBMITTED)
    if request.precedence in _BULK_PRECEDENCE or request.list_headers:
        return Decision(BULK)
    if request.reply_to is None:
        return Decision(NO_SENDER)
    own = {normalize_address(a) for a in own_addresses}
    if normalize_address(request.reply_to) in own or normalize_address(envelope) in own:
        return Decision(OWN_ADDRESS)
    if is_daemon_address(request.reply_to):
        return Decision(BOUNCE)
    return Decision(ANSWER)


def dkim_decision(required: bool, passed: bool) -> Decision:
    return Decision(DKIM_FAIL) if required and not passed else Decision(ANSWER)


def is_daemon_address(address: str) -> bool:
    local = address.lower().rpartition("@")[0] or address.lower()
    return (local in _DAEMON_LOCALS or local.startswith(_DAEMON_PREFIXES)
            or local.endswith(_DAEMON_SUFFIXES))


def normalize_address(address: str) -> str:
    """One mailbox, one key: lowercased, without ``+tag``; Gmail ignores dots and knows
    googlemail.com as gmail.com."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at:
        return address.strip().lower()
    local = local.split("+", 1)[0] or local
    if domain in ("gmail.com", "googlemail.com"):
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def sender_hash(key: bytes, address: str) -> bytes:
    """HMAC-SHA256 of the normalized address: what the rate limit stores instead of it."""
    return hmac.new(key, normalize_address(address).encode("utf-8"), hashlib.sha256).digest()


def within_daily_limit(replies_in_last_day: int, limit: int) -> bool:
    return replies_in_last_day < limit


class MinuteWindow:
    """At most ``limit`` events in any 60 seconds (the global cap that protects the relay).
    Time is a parameter: ``allow(now)`` records the event when it is allowed."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()

    def full(self, now: float) -> bool:
        self._expire(now)
        return len(self._times) >= self.limit

    def allow(self, now: float) -> bool:
        if self.full(now):
            return False
        self._times.append(now)
        return True
