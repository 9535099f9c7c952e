"""PsinetStore: re-reads the exported file when it changes, keeps the last good snapshot
(with last_error set) when the new file is bad, and copes with a missing file."""

from __future__ import annotations

import json
import os

import pytest

from onehop.server.psinet import PsinetSnapshot, PsinetStore


def database(version: str, sponsor: str = "S") -> dict:
    return {
        "default_sponsor_id": sponsor,
        "sponsors": {sponsor: {"home_pages": {"None": [{"url": f"https://{sponsor.lower()}.example/"}]}}},
        "client_versions": {"Windows": [{"version": version}]},
    }


class PsinetFile:
    """Writes the file and gives every write a distinct, increasing mtime."""

    def __init__(self, path) -> None:
        self.path = path
        self.stamp = 1_700_000_000_000_000_000

    def write(self, content: dict | str) -> None:
        text = content if isinstance(content, str) else json.dumps(content)
        self.path.write_text(text, encoding="utf-8")
        self.stamp += 5_000_000_000
        os.utime(self.path, ns=(self.stamp, self.stamp))


@pytest.fixture
def psinet(tmp_path) -> PsinetFile:
    return PsinetFile(tmp_path / "psinet.json")


def newest_windows(store: PsinetStore):
    return store.snapshot.client_versions.get("Windows")


def test_initial_load(psinet):
    psinet.write(database("5"))
    reloads = []
    store = PsinetStore(str(psinet.path), on_reload=reloads.append)
    assert newest_windows(store) == (5,)
    assert store.last_error is None
    assert len(reloads) == 1 and reloads[0] is store.snapshot


def test_reloads_when_the_file_changes(psinet):
    psinet.write(database("5"))
    reloads = []
    store = PsinetStore(str(psinet.path), on_reload=reloads.append)
    psinet.write(database("6", sponsor="T"))
    assert newest_windows(store) == (6,)
    assert store.snapshot.default_sponsor_id == "T"
    assert len(reloads) == 2


def test_unchanged_file_is_not_reread(psinet):
    psinet.write(database("5"))
    reloads = []
    store = PsinetStore(str(psinet.path), on_reload=reloads.append)
    first = store.snapshot
    assert store.reload_if_changed() is False
    assert store.snapshot is first
    assert len(reloads) == 1


def test_malformed_file_keeps_the_previous_snapshot(psinet):
    psinet.write(database("5"))
    store = PsinetStore(str(psinet.path))
    good = store.snapshot
    psinet.write('{"sponsors": ')  # a truncated export
    assert store.reload_if_changed() is False
    assert store.snapshot is good
    assert store.last_error
    # a later good export is picked up and clears the error
    psinet.write(database("7"))
    assert newest_windows(store) == (7,)
    assert store.last_error is None


@pytest.mark.parametrize("bad", [
    "[]",                                                    # not an object
    json.dumps({"client_versions": {"Windows": [{"version": "x"}]}}),
    json.dumps({"client_versions": {"Windows": [{}]}}),     # no version
    "\ufeff{}",                                              # a BOM is not JSON
])
def test_various_malformed_files_keep_the_previous_snapshot(psinet, bad):
    psinet.write(database("5"))
    store = PsinetStore(str(psinet.path))
    psinet.write(bad)
    assert newest_windows(store) == (5,)
    assert store.last_error


def test_wrong_shape_keeps_the_previous_snapshot(psinet):
    psinet.write(database("5"))
    store = PsinetStore(str(psinet.path))
    psinet.write({"sponsors": ["S"]})
    assert newest_windows(store) == (5,)
    assert store.last_error


def test_missing_file_at_start_gives_an_empty_snapshot_and_an_error(tmp_path):
    store = PsinetStore(str(tmp_path / "absent.json"))
    assert store.snapshot == PsinetSnapshot()
    assert store.last_error


def test_file_appearing_later_is_loaded(psinet):
    store = PsinetStore(str(psinet.path))
    assert store.last_error
    psinet.write(database("8"))
    assert newest_windows(store) == (8,)
    assert store.last_error is None


def test_file_removed_later_keeps_the_snapshot(psinet):
    psinet.write(database("5"))
    store = PsinetStore(str(psinet.path))
    psinet.path.unlink()
    assert newest_windows(store) == (5,)
    assert store.last_error


def test_no_path_means_an_empty_snapshot_without_error():
    store = PsinetStore(None)
    assert store.snapshot == PsinetSnapshot()
    assert store.reload_if_changed() is False
    assert store.last_error is None
