"""Network-wide settings (name -> text value), each validated, each change audited.

``discovery-strategy``       consistent (Psiphon's default) or classic
``permanent-sample-size``    how many permanent servers of other channels join each
                             channel's embedded list (Psiphon: 50)
``feedback-upload-url``      where clients upload encrypted feedback (FeedbackUploadURLs)
``default-sponsor``          the sponsor whose home pages unknown sponsor IDs get
``build-platform``           client platform class of onehop builds (for client versions)
``heal-max-hosts-per-run``   the most hosts one ``heal`` run launches (default 3)
``build-format``             what ``publish`` builds per campaign: zipapp (needs Python) or
                             standalone (one native executable, PyInstaller)
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from ..errors import ConfigError, ConfigProblem
from . import audit
from .models import Setting, Sponsor

PLATFORMS = ("Android", "iOS", "Windows", "Other")
BUILD_FORMATS = ("zipapp", "standalone")


def _strategy(value: str) -> str | None:
    return None if value in ("consistent", "classic") else "must be consistent or classic"


def _count(value: str) -> str | None:
    return None if value.isdigit() and int(value) <= 1000 else "must be a whole number from 0 to 1000"


def _url(value: str) -> str | None:
    parts = urlsplit(value)
    return None if value == "" or (parts.scheme in ("http", "https") and parts.netloc) else \
        "must be an http(s) URL (or empty to unset)"


def _platform(value: str) -> str | None:
    return None if value in PLATFORMS else f"must be one of {', '.join(PLATFORMS)}"


def _build_format(value: str) -> str | None:
    return None if value in BUILD_FORMATS else f"must be one of {', '.join(BUILD_FORMATS)}"


def _anything(value: str) -> str | None:
    return None


DEFAULTS: dict[str, tuple[str, Callable[[str], str | None]]] = {
    "discovery-strategy": ("consistent", _strategy),
    "permanent-sample-size": ("50", _count),
    "feedback-upload-url": ("", _url),
    "default-sponsor": ("", _anything),
    "build-platform": ("Other", _platform),
    "heal-max-hosts-per-run": ("3", _count),
    "build-format": ("zipapp", _build_format),
}


def get(session: Session, name: str) -> str:
    row = session.get(Setting, name)
    return row.value if row is not None else DEFAULTS[name][0]


def all_settings(session: Session) -> dict[str, str]:
    return {name: get(session, name) for name in DEFAULTS}


def put(session: Session, ctx: audit.Context, name: str, value: str) -> str:
    if name not in DEFAULTS:
        raise ConfigError([ConfigProblem("NAME", f"unknown setting {name!r} (known: {', '.join(DEFAULTS)})")])
    if name == "default-sponsor":
        value = value.upper()
    problem = DEFAULTS[name][1](value)
    if name == "default-sponsor" and value and session.get(Sponsor, value) is None:
        problem = "no sponsor with this ID"
    if problem:
        raise ConfigError([ConfigProblem(name, problem)])
    row = session.get(Setting, name)
    old = row.value if row is not None else DEFAULTS[name][0]
    if row is None:
        session.add(Setting(name=name, value=value))
    else:
        row.value = value
    audit.record(session, ctx, "settings.set", "setting", [name], old=old, new=value)
    return value
