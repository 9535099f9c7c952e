"""The psinet snapshot servers read (``psinet.json``, Psiphon's psinet format plus our
``discovery`` key), as ``onehop.server.psinet.parse_psinet`` parses it.

It holds no management credentials, host IPs or sponsor names: sponsors' home pages,
client versions, the tags of every live server (clients prune entries whose tags are
not in it), the network-wide discovery pool with its windows, and the discovery
strategy and HMAC key. It is the same for every server, so an export writes it once.
"""

from __future__ import annotations

import json

from . import lists
from .entries import EntryBook
from .state import NetworkState, SponsorRecord


def _pages(table: dict[str, tuple[str, ...]]) -> dict[str, list[dict]]:
    return {region: [{"region": region, "url": url} for url in urls] for region, urls in sorted(table.items())}


def _sponsor(sponsor: SponsorRecord) -> dict:
    return {"id": sponsor.id, "home_pages": _pages(sponsor.home_pages),
            "mobile_home_pages": _pages(sponsor.mobile_home_pages)}


def psinet_document(state: NetworkState, book: EntryBook) -> dict:
    document = {
        "sponsors": {s.id: _sponsor(s) for s in state.sponsors},
        "client_versions": {platform: [{"version": str(v)} for v in sorted(versions)]
                            for platform, versions in sorted(state.client_versions.items())},
        "valid_server_entry_tags": {tag: True for tag in sorted(book.tags.values())},
        "discovery_servers": lists.discovery_servers(state, book),
        "discovery": {"strategy": state.settings["discovery-strategy"],
                      "hmac_key": state.keys.discovery_hmac.private_key},
    }
    if state.settings.get("default-sponsor"):
        document["default_sponsor_id"] = state.settings["default-sponsor"]
    return document


def psinet_bytes(document: dict) -> bytes:
    return (json.dumps(document, sort_keys=True, indent=1) + "\n").encode("utf-8")
