"""``mail/responder.json``: what the e-mail responder (issue 5) answers per address.

Schema (version 1)::

    {"version": 1, "addresses": {"<lowercased address>": {
        "campaign_id", "channel_id", "channel_name", "sponsor_id", "sponsor_name",
        "language": str | null, "links": [published download URLs],
        "attachment": {"path": relative to responder.json, "filename", "content_type",
                       "format": "zipapp" | "standalone"} | null}}}

Links are the campaign's build URLs from ``--base-url`` and from the last publish to
each target; the attachment is the campaign's last published build when it is still
available locally (the build cache or a directory target), copied under ``builds/``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

from .builds import find_cached_build
from .publish import build_format, build_path, web_urls
from .state import CampaignRecord, NetworkState, PublicationRecord
from .targets import join_url

RESPONDER_VERSION = 1
ATTACHMENT_TYPE = "application/zip"
STANDALONE_TYPE = "application/octet-stream"
#: Attachment names mail filters let through: a zipapp is a zip file; a standalone build gets
#: no extension that filters treat as a program (``.exe`` is blocked by most), only a name
#: saying what it runs on; the reply tells the user to make it executable and run it.
ZIPAPP_SUFFIX = ".zip"


def slug(text: str, fallback: str) -> str:
    value = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")
    return value or fallback.lower()


def latest_builds(state: NetworkState, campaign: CampaignRecord) -> list[PublicationRecord]:
    """The newest client-build publication of ``campaign`` on each target."""
    newest: dict[str, PublicationRecord] = {}
    for item in state.publications:
        if item.kind != "client-build" or item.campaign_id != campaign.id:
            continue
        if item.target not in newest or item.published_at >= newest[item.target].published_at:
            newest[item.target] = item
    return sorted(newest.values(), key=lambda p: p.published_at, reverse=True)


def campaign_links(state: NetworkState, campaign: CampaignRecord, base_url: str | None) -> list[str]:
    """Download URLs people can open: http(s) only (a directory target's file:// URL is not one)."""
    links = [join_url(base_url, build_path(campaign.site_id, build_format(state)))] if base_url else []
    for item in latest_builds(state, campaign):
        if item.url not in links:
            links.append(item.url)
    return list(web_urls(tuple(links)))


def local_build(state: NetworkState, campaign: CampaignRecord, cache_dir: Path) -> bytes | None:
    """The bytes of the campaign's last published build, if still found locally."""
    for item in latest_builds(state, campaign):
        candidates = [find_cached_build(cache_dir, item.sha256)]
        if not item.target.startswith("s3://"):
            candidates.append(Path(item.target) / item.path)
        for path in candidates:
            if path is not None and path.is_file():
                data = path.read_bytes()
                if hashlib.sha256(data).hexdigest() == item.sha256:
                    return data
    return None


def standalone_suffix(platform: str | None = None) -> str:
    """``-linux``, ``-windows.bin`` or ``-macos``: what a standalone attachment is called after."""
    platform = platform or sys.platform
    if platform.startswith("win"):
        return "-windows.bin"  # never .exe: the reply says to rename it
    return "-macos" if platform.startswith("darwin") else "-linux"


def responder_entry(state: NetworkState, campaign: CampaignRecord, links: list[str],
                    attachment_path: str | None, build_format: str = "zipapp") -> dict:
    channel, sponsor = state.channel(campaign.channel_id), state.sponsor(campaign.sponsor_id)
    attachment = None
    if attachment_path:
        standalone = build_format == "standalone"
        suffix = standalone_suffix() if standalone else ZIPAPP_SUFFIX
        attachment = {"path": attachment_path, "filename": f"onehop-{slug(channel.name, channel.id)}{suffix}",
                      "content_type": STANDALONE_TYPE if standalone else ATTACHMENT_TYPE, "format": build_format}
    return {"campaign_id": campaign.id, "channel_id": channel.id, "channel_name": channel.name,
            "sponsor_id": sponsor.id, "sponsor_name": sponsor.name, "language": campaign.language,
            "links": links, "attachment": attachment}


def responder_bytes(addresses: dict[str, dict]) -> bytes:
    document = {"version": RESPONDER_VERSION, "addresses": dict(sorted(addresses.items()))}
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
