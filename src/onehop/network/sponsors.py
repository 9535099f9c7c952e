"""Sponsors and their home pages (per region, ``None`` being the default; mobile
pages separately), as the handshake hands them out."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ConfigError, ConfigProblem
from . import audit, ids
from .errors import Conflict, NotFound
from .models import HomePage, Sponsor

DEFAULT_REGION = "None"
_SPEC = re.compile(r"([A-Z]{2}|None)=(.*)", re.DOTALL)


def parse_home_page(spec: str) -> tuple[str, str]:
    """``[REGION=]URL`` -> (region, url); REGION is a country code or None (default).

    Raises ValueError with a message when the spec is unusable.
    """
    match = _SPEC.fullmatch(spec)
    region, url = (match.group(1), match.group(2)) if match else (DEFAULT_REGION, spec)
    problem = url_problem(url)
    if problem:
        raise ValueError(problem)
    return region, url


def url_problem(url: str) -> str | None:
    if not url or len(url) > 2000 or any(c.isspace() or ord(c) < 32 for c in url):
        return "a URL must be 1-2000 characters without spaces or control characters"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an http:// or https:// URL"
    return None


def check_display_name(key: str, name: str, problems: list[ConfigProblem]) -> None:
    if not name.strip() or len(name) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        problems.append(ConfigProblem(key, "must be 1-200 printable characters"))


def _parse_specs(key: str, specs: list[str], problems: list[ConfigProblem]) -> list[tuple[str, str]]:
    pages = []
    for spec in specs:
        try:
            pages.append(parse_home_page(spec))
        except ValueError as exc:
            problems.append(ConfigProblem(key, f"{spec!r}: {exc}"))
    return pages


def add_sponsor(session: Session, ctx: audit.Context, name: str, home_pages: Sequence[str] = (),
                mobile_home_pages: Sequence[str] = ()) -> Sponsor:
    problems: list[ConfigProblem] = []
    check_display_name("--name", name, problems)
    pages = _parse_specs("--home-page", list(home_pages), problems)
    mobile = _parse_specs("--mobile-home-page", list(mobile_home_pages), problems)
    if problems:
        raise ConfigError(problems)
    if session.scalars(select(Sponsor).where(Sponsor.name == name)).first() is not None:
        raise Conflict(f"a sponsor named {name!r} already exists")
    sponsor = Sponsor(id=ids.hex_id(), name=name, created_at=ctx.now)
    session.add(sponsor)
    for position, (region, url) in enumerate(pages):
        sponsor.home_pages.append(HomePage(region=region, url=url, mobile=False, position=position))
    for position, (region, url) in enumerate(mobile):
        sponsor.home_pages.append(HomePage(region=region, url=url, mobile=True, position=position))
    session.flush()
    audit.record(session, ctx, "sponsor.add", "sponsor", [sponsor.id], name=name,
                 home_pages=len(pages), mobile_home_pages=len(mobile))
    return sponsor


def add_home_page(session: Session, ctx: audit.Context, sponsor: Sponsor, spec: str, mobile: bool) -> HomePage:
    try:
        region, url = parse_home_page(spec)
    except ValueError as exc:
        raise ConfigError([ConfigProblem("--add", f"{spec!r}: {exc}")]) from None
    same = [p for p in sponsor.home_pages if p.mobile == mobile and p.region == region]
    if any(p.url == url for p in same):
        raise Conflict(f"sponsor {sponsor.id} already has this home page for region {region}")
    page = HomePage(region=region, url=url, mobile=mobile, position=len(same))
    sponsor.home_pages.append(page)
    session.flush()
    audit.record(session, ctx, "sponsor.homepage.add", "sponsor", [sponsor.id], region=region, mobile=mobile)
    return page


def remove_home_page(session: Session, ctx: audit.Context, sponsor: Sponsor, url: str,
                     region: str | None, mobile: bool) -> int:
    doomed = [p for p in sponsor.home_pages if p.url == url and p.mobile == mobile
              and (region is None or p.region == region)]
    if not doomed:
        raise NotFound(f"sponsor {sponsor.id} has no such {'mobile ' if mobile else ''}home page")
    for page in doomed:
        sponsor.home_pages.remove(page)
    session.flush()
    audit.record(session, ctx, "sponsor.homepage.remove", "sponsor", [sponsor.id],
                 regions=sorted({p.region for p in doomed}), mobile=mobile)
    return len(doomed)


def list_sponsors(session: Session) -> list[Sponsor]:
    return list(session.scalars(select(Sponsor).order_by(Sponsor.created_at, Sponsor.name)))


def pages_by_region(sponsor: Sponsor, mobile: bool) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    for page in sorted(sponsor.home_pages, key=lambda p: (p.region, p.position, p.id or 0)):
        if page.mobile == mobile:
            table.setdefault(page.region, []).append(page.url)
    return table


def as_dict(sponsor: Sponsor) -> dict:
    return {"id": sponsor.id, "name": sponsor.name,
            "created_at": sponsor.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "home_pages": pages_by_region(sponsor, False),
            "mobile_home_pages": pages_by_region(sponsor, True)}
