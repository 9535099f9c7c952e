"""A symlink planted where an export stages its files cannot redirect server secrets.

Before: ``network/fileio.py`` staged each file as ``.NAME.tmp<pid>`` opened without
``O_EXCL | O_NOFOLLOW``, so anyone able to write in the export directory (or guess the
pid) planted ``.server.json.tmp<pid> -> /their/file`` and ``export`` wrote the server's
keys into their file. Same for the linked psinet copy and the client upgrade's
``<file>.previous`` copy.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from onehop.client.upgrade.install import install_file
from onehop.network.fileio import FileBatch, write_atomic

SECRET = b'{"SshPrivateKey": "secret"}'


def _plant(directory: Path, name: str, loot: Path) -> list[Path]:
    """Symlinks at every temporary name a writer in this process could predict."""
    planted = []
    for tmp in (f".{name}.tmp{os.getpid()}", f"{name}.tmp", f".{name}.tmp"):
        link = directory / tmp
        link.symlink_to(loot)
        planted.append(link)
    return planted


def test_write_atomic_never_follows_a_planted_temp_symlink(tmp_path):
    loot = tmp_path / "attacker-owned"
    loot.write_bytes(b"")
    out = tmp_path / "export" / "srv"
    out.mkdir(parents=True)
    _plant(out, "server.json", loot)
    write_atomic(out / "server.json", SECRET, 0o600)
    assert loot.read_bytes() == b""
    assert (out / "server.json").read_bytes() == SECRET
    assert not (out / "server.json").is_symlink()
    assert os.stat(out / "server.json").st_mode & 0o777 == 0o600


@pytest.fixture
def racing_link(monkeypatch, tmp_path):
    """os.link loses a race: the attacker plants a symlink at the temporary name just
    before it (or the file system has no hard links), and the copy fallback runs."""
    loot = tmp_path / "attacker-owned"

    def link(source, tmp, *args, **kwargs):
        if not os.path.lexists(tmp):
            os.symlink(loot, tmp)
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os, "link", link)
    return loot


def test_batch_link_never_follows_a_planted_temp_symlink(tmp_path, racing_link):
    loot = tmp_path / "attacker-owned"
    loot.write_bytes(b"")
    out = tmp_path / "export"
    out.mkdir()
    shared = out / "psinet.json"
    with FileBatch() as batch:
        batch.write(shared, SECRET, 0o600)
        batch.commit()
    server_dir = out / "srv"
    server_dir.mkdir()
    _plant(server_dir, "psinet.json", loot)
    with FileBatch() as batch:
        batch.link(shared, server_dir / "psinet.json")
        batch.commit()
    assert loot.read_bytes() == b""
    assert (server_dir / "psinet.json").read_bytes() == SECRET


def test_upgrade_install_keeps_previous_without_following_symlinks(tmp_path, racing_link):
    loot = tmp_path / "attacker-owned"
    loot.write_bytes(b"")
    target = tmp_path / "onehop-client.pyz"
    target.write_bytes(b"old build")
    (tmp_path / "onehop-client.pyz.previous.tmp").symlink_to(loot)
    install_file(str(target), b"new build")
    assert loot.read_bytes() == b""
    assert target.read_bytes() == b"new build"
    assert (tmp_path / "onehop-client.pyz.previous").read_bytes() == b"old build"
