"""Atomic installs that keep the previous build, rollback, and the pip case."""

from __future__ import annotations

import io
import os
import zipfile

import pytest

from onehop.client.upgrade import install as inst
from onehop.client.upgrade.errors import UpgradeError
from tests.upgrade.conftest import installed_client


def test_install_replaces_atomically_and_keeps_the_previous(tmp_path, builds):
    path = installed_client(tmp_path, builds["41"])
    result = inst.install_file(path, builds["42"])
    assert open(path, "rb").read() == builds["42"]
    assert result.previous == path + ".previous" and open(result.previous, "rb").read() == builds["41"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o750"             # the old file's mode
    assert sorted(os.listdir(os.path.dirname(path))) == ["onehop-client.pyz", "onehop-client.pyz.previous"]


def test_a_failed_replace_leaves_the_client_untouched(tmp_path, builds, monkeypatch):
    path = installed_client(tmp_path, builds["41"])
    real_replace = os.replace

    def failing(src, dst):
        if dst == path:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(inst.os, "replace", failing)
    with pytest.raises(UpgradeError, match="No space left"):
        inst.install_file(path, builds["42"])
    assert open(path, "rb").read() == builds["41"]
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".new")]  # no litter


def test_rollback_restores_and_keeps_the_rejected_build(tmp_path, builds):
    path = installed_client(tmp_path, builds["41"])
    inst.install_file(path, builds["42"])
    result = inst.rollback(path)
    assert open(path, "rb").read() == builds["41"]
    assert open(result.rolled_back, "rb").read() == builds["42"]
    with pytest.raises(UpgradeError, match="no previous version"):
        inst.rollback(path)


def test_rollback_client_remembers_the_bad_version(tmp_path, builds):
    path = installed_client(tmp_path, builds["41"])
    data_dir = str(tmp_path / "data")
    inst.install_file(path, builds["42"])
    inst.record_install(data_dir, "42", "41", path)
    result = inst.rollback_client(data_dir, inst.Installation("single-file", path, "python3"))
    assert (result.restored_version, result.rolled_back_version) == ("41", "42")
    assert inst.is_rolled_back(data_dir, "42") and not inst.is_rolled_back(data_dir, "43")
    with pytest.raises(UpgradeError, match="pip install onehop=="):
        inst.rollback_client(data_dir, inst.Installation("pip", None, "python3"))


def test_detect_installation(tmp_path, builds):
    zipapp = installed_client(tmp_path, builds["41"])
    assert inst.detect_installation(zipapp, "/usr/bin/python3") == \
        inst.Installation("single-file", os.path.realpath(zipapp), "/usr/bin/python3")
    script = tmp_path / "onehop"
    script.write_text("#!/usr/bin/python3\nfrom onehop.cli import main\n")
    assert inst.detect_installation(str(script)).kind == "pip"
    assert inst.detect_installation("").kind == "pip"


def wheel_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("onehop/__init__.py", "")
        archive.writestr("onehop-0.2.0.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: py3-none-any\n")
    return buffer.getvalue()


def test_pip_instructions_for_a_wheel(tmp_path):
    how = inst.pip_instructions(str(tmp_path), wheel_bytes(), "42", inst.Installation("pip", None, "/venv/bin/python"))
    assert how.path == str(tmp_path / "onehop-0.2.0-py3-none-any.whl")
    assert how.command == f"/venv/bin/python -m pip install --upgrade {how.path}"
    assert open(how.path, "rb").read() == wheel_bytes()


def test_pip_instructions_for_a_zipapp(tmp_path, builds):
    how = inst.pip_instructions(str(tmp_path), builds["42"], "42", inst.Installation("pip", None, "python3"))
    assert how.path.endswith("onehop-client-42.pyz") and how.command == f"python3 {how.path} client"
    assert "pip install --upgrade onehop" in how.message and os.access(how.path, os.X_OK)
