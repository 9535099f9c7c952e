"""Propagation channels and campaigns (channel x sponsor x mechanism).

A channel owns servers and gets its own embedded and remote server lists. A campaign
says how a (channel, sponsor) build reaches people: an e-mail address the responder
answers, or a static download site. Each channel and campaign has a random site ID
that names its publishing prefix, so one published URL does not reveal the others.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ConfigError, ConfigProblem
from . import audit, ids
from .errors import Conflict
from .models import Campaign, Channel, Sponsor
from .sponsors import check_display_name

MECHANISMS = ("email", "static-download")
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+")
_LANGUAGE = re.compile(r"[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?")
DEFAULT_MAX_DISCOVERY_AGE_DAYS = 30
DEFAULT_MAX_PROPAGATION_AGE_DAYS = 90


def _age_problem(value: int) -> str | None:
    return None if 0 <= value <= 3650 else "must be between 0 and 3650 days"


def add_channel(session: Session, ctx: audit.Context, name: str,
                max_discovery_age_days: int = DEFAULT_MAX_DISCOVERY_AGE_DAYS,
                max_propagation_age_days: int = DEFAULT_MAX_PROPAGATION_AGE_DAYS) -> Channel:
    problems: list[ConfigProblem] = []
    check_display_name("--name", name, problems)
    for key, value in (("--max-discovery-age-days", max_discovery_age_days),
                       ("--max-propagation-age-days", max_propagation_age_days)):
        if _age_problem(value):
            problems.append(ConfigProblem(key, _age_problem(value) or ""))
    if problems:
        raise ConfigError(problems)
    if session.scalars(select(Channel).where(Channel.name == name)).first() is not None:
        raise Conflict(f"a channel named {name!r} already exists")
    channel = Channel(id=ids.hex_id(), name=name, site_id=ids.site_id(), created_at=ctx.now,
                      max_discovery_age_days=max_discovery_age_days,
                      max_propagation_age_days=max_propagation_age_days)
    session.add(channel)
    session.flush()
    audit.record(session, ctx, "channel.add", "channel", [channel.id], name=name)
    return channel


def list_channels(session: Session) -> list[Channel]:
    return list(session.scalars(select(Channel).order_by(Channel.created_at, Channel.name)))


def channel_dict(channel: Channel, counts: dict[str, int] | None = None) -> dict:
    out = {"id": channel.id, "name": channel.name, "site_id": channel.site_id,
           "max_discovery_age_days": channel.max_discovery_age_days,
           "max_propagation_age_days": channel.max_propagation_age_days,
           "created_at": channel.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if counts is not None:
        out.update(counts)
    return out


def _campaign_problems(mechanism: str, email: str | None, language: str | None) -> list[ConfigProblem]:
    problems = []
    if mechanism not in MECHANISMS:
        problems.append(ConfigProblem("--mechanism", f"must be one of {', '.join(MECHANISMS)}"))
    if mechanism == "email" and not email:
        problems.append(ConfigProblem("--email", "required for an email campaign"))
    if mechanism != "email" and email:
        problems.append(ConfigProblem("--email", "only email campaigns have an address"))
    if email and not _EMAIL.fullmatch(email):
        problems.append(ConfigProblem("--email", "not an e-mail address"))
    if language and not _LANGUAGE.fullmatch(language):
        problems.append(ConfigProblem("--language", "must be a language code such as en, fa or zh-Hans"))
    return problems


def add_campaign(session: Session, ctx: audit.Context, channel: Channel, sponsor: Sponsor,
                 mechanism: str, email: str | None = None, language: str | None = None) -> Campaign:
    problems = _campaign_problems(mechanism, email, language)
    if problems:
        raise ConfigError(problems)
    address = email.lower() if email else None
    if address and session.scalars(select(Campaign).where(Campaign.email_address == address)).first():
        raise Conflict(f"the address {address} already belongs to a campaign")
    campaign = Campaign(id=ids.hex_id(), channel_id=channel.id, sponsor_id=sponsor.id, mechanism=mechanism,
                        email_address=address, language=language, site_id=ids.site_id(), created_at=ctx.now)
    session.add(campaign)
    session.flush()
    audit.record(session, ctx, "campaign.add", "campaign", [campaign.id, channel.id, sponsor.id],
                 mechanism=mechanism)
    return campaign


def list_campaigns(session: Session, channel: Channel | None = None) -> list[Campaign]:
    query = select(Campaign).order_by(Campaign.created_at, Campaign.id)
    if channel is not None:
        query = query.where(Campaign.channel_id == channel.id)
    return list(session.scalars(query))


def campaign_dict(campaign: Campaign) -> dict:
    return {"id": campaign.id, "channel": campaign.channel_id, "channel_name": campaign.channel.name,
            "sponsor": campaign.sponsor_id, "sponsor_name": campaign.sponsor.name,
            "mechanism": campaign.mechanism, "email_address": campaign.email_address,
            "language": campaign.language, "site_id": campaign.site_id,
            "created_at": campaign.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
