"""Pure: what to answer (``compose_replies``) and its bytes (``render``).

A request is answered with up to two messages: ``links`` (multipart/alternative, text and
HTML, the channel's download links) and ``attachment`` (multipart/mixed: the same two
text parts and the channel's client build under its harmless file name). A ``ReplySpec``
holds everything a reply depends on, so it can sit in the outbox (as JSON) and be
rendered later, identically: the Message-ID and Date are fixed when the reply is
queued, MIME boundaries derive from the Message-ID, and a retry after a crash resends
the same message (only the DKIM ``t=`` differs). Replies never quote the request (a
forged sender must not turn us into a signed reflector of someone else's text).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

from .config import Campaign
from .templates import TemplateSet

LINKS = "links"
ATTACHMENT = "attachment"
_PLACEHOLDER = b"\x00onehop:attachment:placeholder\x00"
_PLACEHOLDER_LINE = base64.b64encode(_PLACEHOLDER) + b"\r\n"


@dataclass(frozen=True)
class EncodedAttachment:
    """A build's base64 body (76-character CRLF lines, exactly as the email package writes
    it), encoded once per build and spliced into every reply that carries it."""

    body: bytes


def encode_attachment(data: bytes) -> EncodedAttachment:
    return EncodedAttachment(base64.encodebytes(data).replace(b"\n", b"\r\n"))


@dataclass(frozen=True)
class ReplySpec:
    kind: str                      # LINKS or ATTACHMENT
    language: str
    to: str                        # the requester (erased from the outbox once delivered)
    sender: str                    # our address, the one they wrote to
    message_id: str                # "<...@domain>", fixed at queue time
    date: str                      # RFC 5322 date, fixed at queue time
    channel_name: str
    sponsor_name: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    attachment_sha256: str | None = None
    attachment_filename: str | None = None
    attachment_type: str | None = None
    attachment_format: str | None = None   # a build format (templates.BUILD_FORMATS); None: zipapp
    version: int = field(default=1)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ReplySpec:
        data = json.loads(text)
        data["references"] = tuple(data.get("references") or ())
        data["links"] = tuple(data.get("links") or ())
        return cls(**data)


def compose_replies(campaign: Campaign, *, to: str, language: str, date: str, message_ids: list[str],
                    in_reply_to: str | None, references: tuple[str, ...],
                    attachment_sha256: str | None) -> list[ReplySpec]:
    """The replies a request gets: links first (if any), then the build (if any).
    ``message_ids`` supplies one fresh id per reply (randomness is the caller's)."""
    common: dict[str, Any] = {"language": language, "to": to, "sender": campaign.address, "date": date,
              "channel_name": campaign.channel_name, "sponsor_name": campaign.sponsor_name,
              "in_reply_to": in_reply_to, "references": _thread(references, in_reply_to)}
    specs = []
    ids = iter(message_ids)
    if campaign.links:
        specs.append(ReplySpec(kind=LINKS, message_id=next(ids), links=campaign.links, **common))
    if campaign.attachment is not None and attachment_sha256:
        a = campaign.attachment
        specs.append(ReplySpec(kind=ATTACHMENT, message_id=next(ids), attachment_sha256=attachment_sha256,
                               attachment_filename=a.filename, attachment_type=a.content_type,
                               attachment_format=a.build_format, **common))
    return specs


def _thread(references: tuple[str, ...], in_reply_to: str | None) -> tuple[str, ...]:
    chain = [r for r in references if r != in_reply_to]
    if in_reply_to:
        chain.append(in_reply_to)
    return tuple(chain[-10:])


def render(spec: ReplySpec, templates: TemplateSet, attachment: EncodedAttachment | None = None) -> bytes:
    """The message (CRLF line ends, not yet DKIM-signed)."""
    lang = templates.get(spec.language)
    subject = lang.subjects[spec.kind]
    values = {"channel_name": spec.channel_name, "sponsor_name": spec.sponsor_name, "address": spec.sender,
              "filename": spec.attachment_filename or "", "lang": spec.language, "direction": lang.direction,
              "subject": subject,
              "install": lang.install_text(spec.attachment_format, spec.attachment_filename or "")}
    text = lang.text[spec.kind].substitute(values, links="\n".join(f"  {u}" for u in spec.links))
    escaped = {k: html.escape(v, quote=True) for k, v in values.items()}
    items = "\n".join(f'<li><a href="{html.escape(u, quote=True)}">{html.escape(u)}</a></li>'
                      for u in spec.links)
    body_html = lang.html[spec.kind].substitute(escaped, links=items)
    msg = EmailMessage(policy=SMTP)
    _headers(msg, spec, subject)
    msg.set_content(text, charset="utf-8")
    msg.add_alternative(body_html, subtype="html", charset="utf-8")
    if spec.kind == ATTACHMENT:
        if attachment is None:
            raise ValueError("the attachment reply needs the attachment bytes")
        maintype, _, subtype = (spec.attachment_type or "application/octet-stream").partition("/")
        msg.add_attachment(_PLACEHOLDER, maintype=maintype, subtype=subtype, filename=spec.attachment_filename)
    msg["Content-Language"] = spec.language  # after the parts: making them moves Content-* down
    _fix_boundaries(msg, spec.message_id)
    out = msg.as_bytes(policy=SMTP)
    if spec.kind == ATTACHMENT:
        assert attachment is not None  # checked above, before the message was built
        if out.count(_PLACEHOLDER_LINE) != 1:
            raise ValueError("the attachment placeholder was not found exactly once")
        out = out.replace(_PLACEHOLDER_LINE, attachment.body, 1)
    return out


def _headers(msg: EmailMessage, spec: ReplySpec, subject: str) -> None:
    msg["From"] = spec.sender
    msg["To"] = spec.to
    msg["Subject"] = subject
    msg["Date"] = spec.date
    msg["Message-ID"] = spec.message_id
    if spec.in_reply_to:
        msg["In-Reply-To"] = spec.in_reply_to
    if spec.references:
        msg["References"] = " ".join(spec.references)
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"


def _fix_boundaries(msg: EmailMessage, message_id: str) -> None:
    seed = hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:32]
    for i, part in enumerate(p for p in msg.walk() if p.is_multipart()):
        part.set_boundary(f"=_onehop_{seed}_{i}")
