"""The files each server of a host needs, from the database or from an export directory."""

from __future__ import annotations

from pathlib import Path

from ...server.config import server_config_to_json
from ..entries import PSINET_FILENAME, EntryBook, server_config
from ..errors import DeployError
from ..export import SERVER_CONFIG, SERVER_ENTRY
from ..psinetdoc import psinet_bytes, psinet_document
from ..state import NetworkState
from .run import ServerBundle


def host_server_ids(state: NetworkState, host_name: str) -> list[str]:
    return [s.id for s in state.servers if s.host.lower() == host_name.lower()]


def from_state(state: NetworkState, host_name: str) -> list[ServerBundle]:
    """What ``export`` would write for the host's live servers, computed in memory."""
    book = EntryBook.build(state.servers, state.keys)
    psinet = psinet_bytes(psinet_document(state, book))
    return [ServerBundle(s.id, server_config_to_json(server_config(s, book, state.keys)).encode("utf-8"),
                         book.encoded[s.id], psinet)
            for s in state.servers if s.host.lower() == host_name.lower()]


def from_export(directory: Path, server_ids: list[str]) -> list[ServerBundle]:
    """The host's servers as an earlier ``export --out DIR`` wrote them."""
    missing, bundles = [], []
    for server_id in server_ids:
        folder = directory / server_id
        paths = [folder / SERVER_CONFIG, folder / SERVER_ENTRY, folder / PSINET_FILENAME]
        absent = [str(p) for p in paths if not p.is_file()]
        if absent:
            missing += absent
            continue
        bundles.append(ServerBundle(server_id, paths[0].read_bytes(), paths[1].read_text("ascii").strip(),
                                    paths[2].read_bytes()))
    if missing:
        raise DeployError(f"the export in {directory} lacks {', '.join(missing)}: run onehop network export "
                          f"--out {directory} first (or deploy without --from-export)")
    return bundles
