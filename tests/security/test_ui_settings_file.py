"""Where the UI writes its settings: a symlinked --config file is written through (before:
the link was replaced by a new regular file and the file it pointed to kept the old
settings), and a proxy password never lands in a file others can read (before: the file's
mode was kept, so a hand-written 0644 config got a world-readable password).
"""

from __future__ import annotations

import json
import os
import stat

from onehop.client.ui.port import Settings
from onehop.client.ui.settings import SettingsFile

PROXY = "socks5://user:s3cret@127.0.0.1:1080"


def test_a_symlinked_config_file_is_written_through(tmp_path):
    real = tmp_path / "dotfiles" / "client.json"
    real.parent.mkdir()
    real.write_text(json.dumps({"LocalSocksProxyPort": 0}))
    real.chmod(0o600)
    link = tmp_path / "client.json"
    link.symlink_to(real)
    SettingsFile(str(link), str(tmp_path / "data")).save(Settings(egress_region="DE"))
    assert link.is_symlink()
    saved = json.loads(real.read_text())
    assert saved["EgressRegion"] == "DE" and saved["LocalSocksProxyPort"] == 0
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o600


def test_a_proxy_password_is_never_left_readable_by_others(tmp_path):
    config = tmp_path / "client.json"
    config.write_text(json.dumps({"LocalSocksProxyPort": 0}))
    config.chmod(0o644)
    SettingsFile(str(config), str(tmp_path / "data")).save(Settings(egress_region="DE"))
    assert stat.S_IMODE(config.stat().st_mode) == 0o644  # no secret: the mode is kept
    SettingsFile(str(config), str(tmp_path / "data")).save(Settings(upstream_proxy=PROXY))
    assert json.loads(config.read_text())["UpstreamProxyURL"] == PROXY
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
