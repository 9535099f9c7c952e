"""``mail/responder.json``: which addresses the responder answers, and with what.

Written by ``onehop network export`` (schema version 1)::

    {"version": 1, "addresses": {"<lowercased address>": {
        "campaign_id": str, "channel_id": str, "channel_name": str,
        "sponsor_id": str, "sponsor_name": str, "language": str | null,
        "links": [str, ...],
        "attachment": {"path": str (relative to responder.json's directory),
                       "filename": str, "content_type": str,
                       "format": "zipapp" | "standalone" (optional, default zipapp)} | null}}}

``load_responder_config`` validates the whole file and raises one ``ConfigError`` that
lists every problem with its key (``addresses.<address>.links[0]``). Attachment files are
checked here too (present, a regular file, not too large to mail) so that a broken export
is refused as a whole and the responder keeps its last good configuration.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from ..configtools import Checker, nonempty_check, read_json_file
from ..errors import ConfigError, ConfigProblem
from .templates import BUILD_FORMATS, DEFAULT_BUILD_FORMAT

VERSION = 1
#: Most providers refuse messages over 25 MB; base64 adds a third.
MAX_ATTACHMENT_BYTES = 18 * 1024 * 1024
#: Extensions that mail providers strip or refuse: ship builds under a harmless name.
REFUSED_EXTENSIONS = (".exe", ".scr", ".bat", ".cmd", ".com", ".pif", ".vbs", ".js", ".jar",
                      ".msi", ".apk", ".ps1", ".cpl", ".lnk", ".hta", ".wsf")

ADDRESS_RE = re.compile(r"[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63})+")
LANGUAGE_RE = re.compile(r"[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?")
_URL_RE = re.compile(r"https?://[^\s<>\"'\x00-\x1f\x7f]+")
_CONTENT_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
_FILENAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ ()+-]{0,119}")


@dataclass(frozen=True)
class Attachment:
    """The channel's client build: ``path`` is absolute, ``filename`` what the mail says."""

    path: Path
    filename: str
    content_type: str
    build_format: str = "zipapp"   # what the reply tells the user to do with it


@dataclass(frozen=True)
class Campaign:
    """What one address answers (one channel x sponsor)."""

    address: str
    campaign_id: str
    channel_id: str
    channel_name: str
    sponsor_id: str
    sponsor_name: str
    language: str | None
    links: tuple[str, ...]
    attachment: Attachment | None

    @property
    def has_content(self) -> bool:
        return bool(self.links) or self.attachment is not None


@dataclass(frozen=True)
class Match:
    """A recipient that names a campaign; ``tag`` is the ``+tag`` of ``get+fa@...``."""

    campaign: Campaign
    tag: str | None


@dataclass(frozen=True)
class ResponderConfig:
    source: Path
    campaigns: Mapping[str, Campaign]

    @property
    def own_addresses(self) -> frozenset[str]:
        return frozenset(self.campaigns)

    def lookup(self, recipient: str) -> Match | None:
        """The campaign a recipient address names: an exact (case-insensitive) match, else
        the address without its ``+tag`` (``get+fa@example.org`` -> ``get@example.org``)."""
        address = recipient.strip().strip("<>").lower()
        if address in self.campaigns:
            return Match(self.campaigns[address], None)
        local, at, domain = address.rpartition("@")
        if not at or "+" not in local:
            return None
        base, _, tag = local.partition("+")
        campaign = self.campaigns.get(f"{base}@{domain}")
        return Match(campaign, tag or None) if campaign else None


def load_responder_config(path: str | os.PathLike) -> ResponderConfig:
    """Read and validate ``responder.json``; ConfigError listing every problem."""
    path = Path(path).absolute()
    raw = read_json_file(path)
    return parse_responder_config(raw, path)


def parse_responder_config(raw: Mapping, path: Path) -> ResponderConfig:
    top = Checker(raw, str(path))
    top.take("version", int, check=lambda v: None if v == VERSION else f"unsupported version {v} "
             f"(this responder reads version {VERSION})")
    addresses = top.take("addresses", dict)
    top.reject_unknown()
    problems = list(top.problems)
    campaigns: dict[str, Campaign] = {}
    for address, entry in sorted((addresses or {}).items()):
        campaign, entry_problems = _campaign(address, entry, path.parent)
        problems.extend(entry_problems)
        if campaign is not None:
            campaigns[address] = campaign
    if problems:
        raise ConfigError(problems, str(path))
    return ResponderConfig(path, MappingProxyType(campaigns))


def _campaign(address: str, entry, base_dir: Path) -> tuple[Campaign | None, list[ConfigProblem]]:
    prefix = f"addresses.{address}"
    problems = []
    if not ADDRESS_RE.fullmatch(address):
        message = "must be lowercased" if ADDRESS_RE.fullmatch(address.lower()) else "not an e-mail address"
        problems.append(ConfigProblem(prefix, message))
    if not isinstance(entry, dict):
        return None, problems + [ConfigProblem(prefix, f"expected an object, got {type(entry).__name__}")]
    c = Checker(entry, prefix=prefix + ".")
    ids = {key: c.take(key, str, check=nonempty_check) for key in
           ("campaign_id", "channel_id", "channel_name", "sponsor_id", "sponsor_name")}
    language = c.take("language", str, default=None, check=_language_check)
    links = c.take("links", list)
    raw_attachment = c.take("attachment", dict, default=None)
    c.reject_unknown()
    problems += c.problems
    checked_links = _links(links or [], prefix, problems)
    attachment = _attachment(raw_attachment, base_dir, f"{prefix}.attachment", problems) \
        if raw_attachment is not None else None
    if problems:
        return None, problems
    return Campaign(address=address, language=language, links=checked_links, attachment=attachment,
                    **ids), []


def _language_check(value: str) -> str | None:
    return None if LANGUAGE_RE.fullmatch(value) else "must be a language code such as en, fa or zh-Hans"


def _links(links: list, prefix: str, problems: list[ConfigProblem]) -> tuple[str, ...]:
    checked = []
    for i, link in enumerate(links):
        key = f"{prefix}.links[{i}]"
        if not isinstance(link, str):
            problems.append(ConfigProblem(key, f"expected a string, got {type(link).__name__}"))
        elif not _URL_RE.fullmatch(link) or len(link) > 2000:
            problems.append(ConfigProblem(key, "must be an http:// or https:// URL without spaces"))
        else:
            checked.append(link)
    return tuple(checked)


def _attachment(raw: dict, base_dir: Path, prefix: str, problems: list[ConfigProblem]) -> Attachment | None:
    c = Checker(raw, prefix=prefix + ".")
    rel = c.take("path", str, check=_relative_path_check)
    filename = c.take("filename", str, check=_filename_check)
    content_type = c.take("content_type", str, check=lambda v: None if _CONTENT_TYPE_RE.fullmatch(v)
                          else "must be a MIME type such as application/zip")
    build_format = c.take("format", str, DEFAULT_BUILD_FORMAT,
                          lambda v: None if v in BUILD_FORMATS else f"one of {', '.join(BUILD_FORMATS)}")
    c.reject_unknown()
    problems += c.problems
    if rel is None:
        return None
    path = base_dir / rel
    message = _file_problem(path)
    if message:
        problems.append(ConfigProblem(prefix + ".path", message))
        return None
    if filename is None or content_type is None:
        return None
    return Attachment(path, filename, content_type, build_format or DEFAULT_BUILD_FORMAT)


def _relative_path_check(value: str) -> str | None:
    pure = PurePosixPath(value)
    if not value or pure.is_absolute() or "\\" in value:
        return "must be a path relative to responder.json's directory"
    if ".." in pure.parts:
        return "must stay inside responder.json's directory (no '..')"
    return None


def _filename_check(value: str) -> str | None:
    if not _FILENAME_RE.fullmatch(value):
        return "must be a plain file name (letters, digits, . _ - + ( ) and spaces; at most 120)"
    if value.lower().endswith(REFUSED_EXTENSIONS):
        return "mail providers refuse this extension: use a harmless name (e.g. app.zip or app.ex_)"
    return None


def _file_problem(path: Path) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"file not found: {path}"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    if not path.is_file():
        return f"not a regular file: {path}"
    if st.st_size == 0:
        return f"empty file: {path}"
    if st.st_size > MAX_ATTACHMENT_BYTES:
        return f"{st.st_size} bytes: too large to mail (at most {MAX_ATTACHMENT_BYTES})"
    if not os.access(path, os.R_OK):
        return f"not readable: {path}"
    return None


@dataclass(frozen=True)
class ActiveConfig:
    """A loaded configuration and, per address, the snapshot of its attachment
    (``blobs``: address -> sha256 in the state directory)."""

    config: ResponderConfig
    blobs: Mapping[str, str]
    signature: tuple = ()   # what the file watcher saw when this was loaded
