"""The client datastore: Psiphon's import rules, pruning, persistence, crash safety."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, UTC

import pytest

from onehop.client.datastore import Datastore
from onehop.core.serverentry import ed25519_keypair_from_seed, sign_server_entry
from tests.helpers.builders import make_entry

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    s = Datastore(str(tmp_path))
    yield s
    s.close()


def by_ip(store):
    return {e.ip_address: e for e in store.entries()}


def test_remote_and_discovery_replace_but_embedded_does_not(store):
    store.import_entries([make_entry("192.0.2.1", region="US")], "EMBEDDED", NOW)
    assert store.import_entries([make_entry("192.0.2.1", region="DE")], "EMBEDDED", NOW) == 0
    assert by_ip(store)["192.0.2.1"].region == "US"
    assert store.import_entries([make_entry("192.0.2.1", region="FR")], "REMOTE", NOW) == 1
    assert by_ip(store)["192.0.2.1"].region == "FR"
    assert by_ip(store)["192.0.2.1"].local_source == "REMOTE"
    assert store.import_entries([make_entry("192.0.2.1", region="JP")], "DISCOVERY", NOW) == 1
    assert by_ip(store)["192.0.2.1"].region == "JP"


def test_embedded_replaces_only_a_lower_configuration_version(store):
    store.import_entries([make_entry("192.0.2.2", region="US").with_fields({"configurationVersion": 2})],
                         "REMOTE", NOW)
    older = make_entry("192.0.2.2", region="DE").with_fields({"configurationVersion": 1})
    newer = make_entry("192.0.2.2", region="JP").with_fields({"configurationVersion": 3})
    assert store.import_entries([older], "EMBEDDED", NOW) == 0
    assert store.import_entries([newer], "EMBEDDED", NOW) == 1
    assert by_ip(store)["192.0.2.2"].region == "JP"


def test_pruning_needs_age_and_blocks_embedded_reimport_only(store):
    entry = make_entry("192.0.2.3")
    store.import_entries([entry], "EMBEDDED", NOW - timedelta(days=8))
    young = make_entry("192.0.2.4")
    store.import_entries([young], "EMBEDDED", NOW - timedelta(days=1))
    tags = [e.tag for e in store.entries()]
    assert store.prune_tags(tags, now=NOW) == 1
    assert set(by_ip(store)) == {"192.0.2.4"}  # too young to prune
    assert store.import_entries([entry], "EMBEDDED", NOW) == 0  # tombstone
    assert store.import_entries([entry], "REMOTE", NOW) == 1    # a remote list may bring it back


def test_state_survives_reopening(tmp_path):
    first = Datastore(str(tmp_path))
    first.import_entries([make_entry("192.0.2.5")], "EMBEDDED", NOW)
    first.set_affinity("192.0.2.5")
    first.set("last_connected", "2026-11-25T12:00:00Z")
    first.add_stat("remote_server_list", {"url": "u"})
    first.close()
    second = Datastore(str(tmp_path))
    assert [e.ip_address for e in second.entries()] == ["192.0.2.5"]
    assert second.affinity() == "192.0.2.5"
    assert second.get("last_connected") == "2026-11-25T12:00:00Z"
    assert [kind for _, kind, _ in second.pending_stats()] == ["remote_server_list"]
    assert sqlite3.connect(second.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    second.close()


def test_a_failing_batch_leaves_nothing_behind(store):
    store.import_entries([make_entry("192.0.2.6", region="US")], "EMBEDDED", NOW)

    def batch():
        yield make_entry("192.0.2.6", region="DE")
        yield make_entry("192.0.2.7")
        raise RuntimeError("the list broke halfway")

    with pytest.raises(RuntimeError):
        store.import_entries(batch(), "REMOTE", NOW)
    assert {ip: e.region for ip, e in by_ip(store).items()} == {"192.0.2.6": "US"}


def test_forged_signed_entries_are_dropped(tmp_path):
    private, public = ed25519_keypair_from_seed(bytes(range(32)))
    store = Datastore(str(tmp_path), signature_public_key=public)
    good = sign_server_entry(make_entry("192.0.2.8"), private)
    forged = good.with_fields({"region": "XX"})  # signature no longer matches
    assert store.import_entries([good, forged.with_fields({"ipAddress": "192.0.2.9"})], "DISCOVERY", NOW) == 1
    assert set(by_ip(store)) == {"192.0.2.8"}
    store.close()


def test_corrupt_file_is_a_clear_error(tmp_path):
    (tmp_path / "datastore.sqlite").write_bytes(b"this is not a database" * 100)
    from onehop.errors import ConfigError
    with pytest.raises(ConfigError, match="datastore"):
        Datastore(str(tmp_path))


def test_a_new_data_directory_is_private(tmp_path):
    """Issue 16 item 11: the data directory (shared with the default network database) was
    made 0755, so the database that `network init` put there later sat in an open directory."""
    import os
    import stat
    Datastore(str(tmp_path / "data")).close()
    assert stat.S_IMODE(os.stat(tmp_path / "data").st_mode) == 0o700
