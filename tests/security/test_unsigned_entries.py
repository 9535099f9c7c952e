"""Issue 18 item 8: with ServerEntrySignaturePublicKey set, unsigned entries are refused.

Before the fix only entries that *carried* a signature were checked, so an attacker who
could inject an entry (a discovery answer, a list, a config file) simply left the
signature out. Now every source is held to the key, and the refusal is said once.
"""

from __future__ import annotations

import pytest

from onehop.client.app import open_store
from onehop.client.config import ClientConfig
from onehop.client.controller import Controller
from onehop.client.datastore import Datastore
from onehop.client.notices import Notices
from onehop.core.serverentry import (ed25519_keypair_from_seed, encode_server_entry, encode_server_list,
                                     sign_server_entry)
from onehop.errors import ConfigError
from tests.helpers.builders import make_entry

PRIVATE, PUBLIC = ed25519_keypair_from_seed(bytes(range(32)))


def _alerts(notices: Notices) -> list[dict]:
    return [n for n in notices.recent if n["noticeType"] == "Alert"]


@pytest.mark.parametrize("source", ["DISCOVERY", "REMOTE", "EMBEDDED"])
def test_unsigned_entries_are_not_stored_when_a_key_is_set(tmp_path, source):
    store = Datastore(str(tmp_path), signature_public_key=PUBLIC)
    signed = sign_server_entry(make_entry("192.0.2.8"), PRIVATE)
    assert store.import_entries([make_entry("192.0.2.9"), signed], source) == 1
    assert [e.ip_address for e in store.entries()] == ["192.0.2.8"]
    store.close()


def test_without_a_key_unsigned_entries_are_still_accepted(tmp_path):
    store = Datastore(str(tmp_path))
    assert store.import_entries([make_entry("192.0.2.9")], "EMBEDDED") == 1
    store.close()


def test_server_list_file_with_unsigned_entries_is_refused_and_said_once(tmp_path):
    listing = tmp_path / "list.dat"
    listing.write_text(encode_server_list([make_entry("192.0.2.10"), make_entry("192.0.2.11")]))
    notices = Notices(None)
    config = ClientConfig(data_dir=str(tmp_path / "data"), server_list_file=str(listing),
                          server_entry_signature_public_key=PUBLIC)
    store = open_store(config, notices)
    assert store.entries() == []
    said = [a for a in _alerts(notices) if "unsigned" in a["data"]["message"]]
    assert len(said) == 1 and "ServerEntrySignaturePublicKey" in said[0]["data"]["message"]
    # more unsigned entries (say, from discovery) are refused quietly: it was said once
    controller = Controller(config, store, notices)
    controller._import_discovered((encode_server_entry(make_entry("192.0.2.12")),), "")
    assert store.entries() == []
    assert len([a for a in _alerts(notices) if "unsigned" in a["data"]["message"]]) == 1
    store.close()


def test_discovered_signed_entries_are_still_imported(tmp_path):
    notices = Notices(None)
    config = ClientConfig(data_dir=str(tmp_path / "data"), server_entry_signature_public_key=PUBLIC)
    store = open_store(config, notices)
    controller = Controller(config, store, notices)
    signed = sign_server_entry(make_entry("192.0.2.13"), PRIVATE)
    controller._import_discovered((encode_server_entry(signed),), "")
    assert [e.ip_address for e in store.entries()] == ["192.0.2.13"]
    store.close()


def test_an_unsigned_target_entry_is_a_config_error(tmp_path):
    config = ClientConfig(data_dir=str(tmp_path / "data"), server_entry_signature_public_key=PUBLIC,
                          target_server_entry=encode_server_entry(make_entry("192.0.2.14")))
    with pytest.raises(ConfigError, match="ServerEntrySignaturePublicKey"):
        open_store(config, Notices(None))
    signed = sign_server_entry(make_entry("192.0.2.14"), PRIVATE)
    config = ClientConfig(data_dir=str(tmp_path / "data"), server_entry_signature_public_key=PUBLIC,
                          target_server_entry=encode_server_entry(signed))
    assert [e.ip_address for e in open_store(config, Notices(None)).entries()] == ["192.0.2.14"]
