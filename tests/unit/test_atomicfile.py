"""onehop.atomicfile: the one recipe every part uses to replace a state file."""

from __future__ import annotations

import os

import pytest

from onehop.atomicfile import fsync_directory, replace_file, write_beside


def test_replace_sets_content_and_mode_whatever_the_umask(tmp_path):
    target = tmp_path / "server.json"
    target.write_bytes(b"old")
    old_umask = os.umask(0o077)
    try:
        replace_file(target, b"new", 0o644)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o644
    replace_file(target, b"secret", 0o600)
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["server.json"]  # no temporary file left


def test_a_failed_rename_keeps_the_old_target_and_leaves_no_temp(tmp_path):
    target = tmp_path / "occupied"
    target.mkdir()  # a file cannot be renamed over a directory
    (target / "inside").write_bytes(b"kept")
    with pytest.raises(OSError):
        replace_file(target, b"data")
    assert (target / "inside").read_bytes() == b"kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied"]


def test_a_missing_directory_is_an_oserror_not_a_partial_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        replace_file(tmp_path / "absent" / "file", b"data")
    assert not (tmp_path / "absent").exists()


def test_write_beside_makes_unique_hidden_temporaries(tmp_path):
    target = tmp_path / "build.pyz"
    first, second = write_beside(target, b"a", 0o755), write_beside(target, b"b", 0o755)
    assert first != second and os.path.dirname(first) == str(tmp_path)
    assert os.path.basename(first).startswith(".build.pyz.")
    assert open(first, "rb").read() == b"a" and os.stat(second).st_mode & 0o777 == 0o755
    assert not target.exists()


def test_fsync_directory_is_best_effort(tmp_path):
    fsync_directory(tmp_path)
    fsync_directory(tmp_path / "missing")  # no exception
    (tmp_path / "plain").write_bytes(b"")
    fsync_directory(tmp_path / "plain")  # not a directory: no exception either
