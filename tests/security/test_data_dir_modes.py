"""Issue 18 item 10: the client's data directory and the files in it are private.

The datastore holds every server entry the client knows (addresses, SSH credentials,
obfuscation keys); before the fix it was 0644 in a 0755 directory, and a directory that
already existed with looser modes stayed that way.
"""

from __future__ import annotations

import os
import stat

import pytest

from onehop.client.app import open_store
from onehop.client.config import ClientConfig
from onehop.client.notices import Notices
from onehop.net.resumable import _PartSink
from tests.helpers.builders import make_entry


@pytest.fixture(autouse=True)
def loose_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _files(directory) -> list[str]:
    return [os.path.join(root, name) for root, _, names in os.walk(directory) for name in names]


def test_a_new_data_directory_and_its_files_are_private(tmp_path):
    data = tmp_path / "data"
    notices = Notices(None)
    store = open_store(ClientConfig(data_dir=str(data)), notices)
    store.import_entries([make_entry("192.0.2.1")], "DISCOVERY")
    store.set("affinity", "192.0.2.1")
    assert _mode(data) == 0o700
    assert _files(data) and {f: _mode(f) for f in _files(data)} == {f: 0o600 for f in _files(data)}
    assert not [n for n in notices.recent if "0700" in str(n["data"])]  # nothing to say
    store.close()


def test_an_existing_loose_directory_is_tightened_and_said_once(tmp_path):
    data = tmp_path / "data"
    store = open_store(ClientConfig(data_dir=str(data)), Notices(None))
    store.import_entries([make_entry("192.0.2.1")], "DISCOVERY")
    store.close()
    os.chmod(data, 0o755)
    for name in os.listdir(data):
        os.chmod(data / name, 0o644)
    (data / "notices.log").write_text("{}\n")
    os.chmod(data / "notices.log", 0o644)
    notices = Notices(None)
    store = open_store(ClientConfig(data_dir=str(data)), notices)
    assert _mode(data) == 0o700
    assert {f: _mode(f) for f in _files(data)} == {f: 0o600 for f in _files(data)}
    said = [n for n in notices.recent if "0700" in n["data"].get("message", "")]
    assert len(said) == 1, list(notices.recent)
    store.close()
    notices = Notices(None)
    open_store(ClientConfig(data_dir=str(data)), notices).close()
    assert not [n for n in notices.recent if "0700" in n["data"].get("message", "")]  # once


def test_downloaded_parts_are_private(tmp_path):
    """The remote server list (and its .part/.etag) lands in the data directory too."""
    part = tmp_path / "remote_server_list.part"
    sink = _PartSink(str(part), str(tmp_path / "remote_server_list.part.etag"), 0, 1000)
    sink.prepare(200, '"etag"', None)
    sink.write(b"entries")
    sink.close()
    assert _mode(part) == 0o600
    assert _mode(tmp_path / "remote_server_list.part.etag") == 0o600
