"""Server lists: a channel's embedded list, its remote (signed) list, and the
network-wide discovery pool.

* Embedded list: the channel's embedded servers (database order) plus a random sample
  of permanent servers of other channels (``permanent-sample-size``, Psiphon: 50). The
  sample is seeded by the channel ID and drawn from the sorted pool, so it stays the
  same from export to export while the pool does (unchanged files are not rewritten).
* Remote list: the same entries as an authenticated package (RSA PKCS#1 v1.5 SHA-256
  over the newline-joined entries, zlib), as Psiphon clients fetch it.
* Discovery pool: every live server with a discovery window that has not ended,
  whatever its channel (Psiphon's pool is network-wide), in database order.
"""

from __future__ import annotations

import hashlib
import random

from ..core.authpackage import compress_zlib
from .entries import EntryBook
from .signing import PackageSigner
from .state import NetworkState, ServerRecord

REMOTE_LIST_NAME = "server_list_compressed"
EMBEDDED_LIST_NAME = "embedded_server_list"


def rfc3339(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def permanent_sample(state: NetworkState, channel_id: str) -> list[ServerRecord]:
    size = int(state.settings.get("permanent-sample-size", "50"))
    pool = sorted((s for s in state.servers if s.permanent and s.embedded and s.channel_id != channel_id),
                  key=lambda s: s.id)
    if len(pool) <= size:
        return pool
    rng = random.Random(hashlib.sha256(channel_id.encode("ascii")).digest())
    return sorted(rng.sample(pool, size), key=lambda s: s.id)


def embedded_servers(state: NetworkState, channel_id: str) -> list[ServerRecord]:
    own = [s for s in state.servers if s.channel_id == channel_id and s.embedded]
    return own + permanent_sample(state, channel_id)


def embedded_list(state: NetworkState, book: EntryBook, channel_id: str) -> list[str]:
    return [book.encoded[s.id] for s in embedded_servers(state, channel_id)]


def list_text(encoded: list[str]) -> str:
    return "\n".join(encoded)


def remote_list_package(encoded: list[str], signer: PackageSigner) -> bytes:
    """The zlib-compressed authenticated package a client's remote list fetch reads
    (``signer`` holds the network's remote list key)."""
    return compress_zlib(signer.sign(list_text(encoded)))


def discovery_pool(state: NetworkState) -> list[ServerRecord]:
    return [s for s in state.servers
            if s.discovery_start is not None and s.discovery_end is not None and s.discovery_end > state.now]


def discovery_servers(state: NetworkState, book: EntryBook) -> list[dict]:
    """psinet's ``discovery_servers``: date range [start, end) and the signed entry."""
    return [{"discovery_date_range": [rfc3339(s.discovery_start), rfc3339(s.discovery_end)],
             "encoded_server_entry": book.encoded[s.id]} for s in discovery_pool(state)]
