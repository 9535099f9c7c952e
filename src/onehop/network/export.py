"""``onehop network export --out DIR``: what every server and the mail responder read.

Layout::

    DIR/                             mode 0700 when export creates it (else a warning)
    DIR/psinet.json                  the network-wide psinet snapshot; mode 0600 (discovery HMAC key)
    DIR/<server id>/                 mode 0700, made so if it was not
    DIR/<server id>/server.json      mode 0600 (secrets); `onehop server run --config` reads it
    DIR/<server id>/server-entry.dat the server's signed encoded entry
    DIR/<server id>/psinet.json      the snapshot (a hard link to DIR/psinet.json, or a copy)
    DIR/logs/<server id>/events.jsonl the server's event log (its LogFilename, relative to
                                     server.json): `onehop network stats ingest --from DIR/logs`;
                                     the same shape as a deployed host's ROOT/logs/<id>/events.jsonl,
                                     and outside the server's directory so retiring keeps it
    DIR/mail/responder.json          e-mail campaigns (see ``responder``)
    DIR/mail/builds/<campaign>.pyz   campaign builds to attach, when available

Every file is written atomically and only when its content changed, so a running
server reloads its psinet only when the network changed. Directories of retired
servers are removed (their servers must stop).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..atomicfile import open_directory_warning, private_directory
from ..server.config import server_config_to_json
from .builds import default_cache_dir
from .entries import PSINET_FILENAME, EntryBook, server_config
from .errors import NetworkError
from .builds import CACHE_SUFFIXES, format_of
from .fileio import FileBatch
from .psinetdoc import psinet_bytes, psinet_document
from .responder import campaign_links, local_build, responder_bytes, responder_entry
from .state import NetworkState

SERVER_CONFIG = "server.json"
SERVER_ENTRY = "server-entry.dat"
MAIL_DIR = "mail"
LOGS_DIR = "logs"
LOG_NAME = "events.jsonl"


def log_filename(server_id: str) -> str:
    """The exported LogFilename, relative to DIR/<server id>/server.json."""
    return f"../{LOGS_DIR}/{server_id}/{LOG_NAME}"


@dataclass(frozen=True)
class ExportResult:
    out_dir: str
    servers: tuple[str, ...]
    written: tuple[str, ...]
    unchanged: int
    removed: tuple[str, ...]
    responder_addresses: int
    attachments: int = 0

    def as_dict(self) -> dict:
        return {"out_dir": self.out_dir, "servers": list(self.servers), "written": list(self.written),
                "unchanged": self.unchanged, "removed": list(self.removed),
                "responder_addresses": self.responder_addresses, "attachments": self.attachments}


def _stage_servers(batch: FileBatch, state: NetworkState, book: EntryBook, out: Path) -> None:
    shared = out / PSINET_FILENAME
    for server in state.servers:
        directory = out / server.id
        private_directory(directory, tighten=True)
        config = server_config(server, book, state.keys)
        config["LogFilename"] = log_filename(server.id)
        (out / LOGS_DIR / server.id).mkdir(mode=0o700, parents=True, exist_ok=True)
        batch.write(directory / SERVER_CONFIG, server_config_to_json(config).encode("utf-8"), 0o600)
        batch.write(directory / SERVER_ENTRY, (book.encoded[server.id] + "\n").encode("ascii"), 0o644)
        batch.link(shared, directory / PSINET_FILENAME)


def _stage_mail(batch: FileBatch, state: NetworkState, out: Path, base_url: str | None,
                cache_dir: Path) -> tuple[int, int]:
    addresses, attachments = {}, 0
    for campaign in state.campaigns:
        if campaign.mechanism != "email" or not campaign.email_address:
            continue
        relative = None
        build = local_build(state, campaign, cache_dir)
        build_format = (format_of(build) or "zipapp") if build is not None else "zipapp"
        if build is not None:
            relative = f"builds/{campaign.id}{CACHE_SUFFIXES[build_format]}"
            batch.write(out / MAIL_DIR / relative, build, 0o644)
            attachments += 1
        links = campaign_links(state, campaign, base_url)
        addresses[campaign.email_address] = responder_entry(state, campaign, links, relative, build_format)
    batch.write(out / MAIL_DIR / "responder.json", responder_bytes(addresses), 0o644)
    return len(addresses), attachments


def _remove_retired(state: NetworkState, out: Path) -> list[str]:
    removed = []
    for server_id in sorted(state.retired_server_ids):
        directory = out / server_id
        if (directory / SERVER_CONFIG).is_file():
            shutil.rmtree(directory)
            removed.append(server_id)
    return removed


def export_network(state: NetworkState, out: Path, *, base_url: str | None = None,
                   cache_dir: Path | None = None) -> ExportResult:
    try:
        if not private_directory(out):
            logging.getLogger(__name__).warning(open_directory_warning(out, "psinet.json (the discovery HMAC key)"))
    except OSError as exc:
        raise NetworkError(f"cannot create {out}: {exc.strerror}") from None
    book = EntryBook.build(state.servers, state.keys)
    try:
        with FileBatch() as batch:
            batch.write(out / PSINET_FILENAME, psinet_bytes(psinet_document(state, book)), 0o600)
            _stage_servers(batch, state, book, out)
            addresses, attachments = _stage_mail(batch, state, out, base_url, cache_dir or default_cache_dir())
            batch.commit()
        removed = _remove_retired(state, out)
    except OSError as exc:
        raise NetworkError(f"export to {out} failed: {exc.strerror or exc}; files already in place were "
                           "left as they were") from None
    written = tuple(sorted(os.path.relpath(p, out) for p in batch.written))
    return ExportResult(str(out), tuple(s.id for s in state.servers), written, batch.unchanged,
                        tuple(removed), addresses, attachments)
