"""Whole-device bad input: one clear line each, and no rule anywhere is touched."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from onehop.cli import main
from onehop.client.wholedevice import rules

from .conftest import ONEHOP, Net


@pytest.fixture
def no_commands(monkeypatch):
    """Fail the test if anything tries to run nft or ip."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"ran a command: {args[0] if args else kwargs}")
    monkeypatch.setattr(rules.subprocess, "run", refuse)


def run_cli(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(["client", *argv])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def test_not_root_is_one_line(monkeypatch, capsys, tmp_path, no_commands):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, lines = run_cli(capsys, "--whole-device", "--data-dir", str(tmp_path))
    assert code == 2 and len(lines) == 1 and "needs root" in lines[0], lines


def test_missing_nft_is_one_line(monkeypatch, capsys, tmp_path, no_commands):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "nft" else f"/usr/sbin/{tool}")
    code, lines = run_cli(capsys, "--whole-device", "--data-dir", str(tmp_path))
    assert code == 2 and len(lines) == 1 and "apt-get install nftables" in lines[0], lines


def test_unknown_interface_is_one_line(monkeypatch, capsys, tmp_path, no_commands):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: f"/usr/sbin/{tool}")
    code, lines = run_cli(capsys, "--whole-device", "--share-lan", "nosuch0", "--data-dir", str(tmp_path))
    assert code == 2 and len(lines) == 1 and "--share-lan" in lines[0] and "nosuch0" in lines[0], lines


def test_share_lan_needs_whole_device(capsys, tmp_path, no_commands):
    code, lines = run_cli(capsys, "--share-lan", "lo", "--data-dir", str(tmp_path))
    assert code == 2 and "--share-lan: needs --whole-device" in lines[-1], lines


def test_ruleset_touches_only_its_own_table():
    text = rules.ruleset(rules.RuleSpec(1000, 1001, "eth1", ipv6=False))
    tables = {line.split("{")[0].strip() for line in text.splitlines() if line.startswith(("table", "delete"))}
    assert tables == {"table inet onehop", "delete table inet onehop"}
    assert "tproxy ip6" not in text and "meta nfproto ipv6 return" in text  # IPv6 blocked, not leaked
    assert 'iifname "eth1"' in text


def test_really_as_root_in_a_namespace(net: Net, tmp_path):
    """As root for real: the device namespace's (empty) ruleset stays exactly as it was."""
    before = net.run("dev", "nft", "list", "ruleset").stdout
    bad_iface = net.run("dev", *ONEHOP, "client", "--whole-device", "--share-lan", "nosuch0",
                        "--data-dir", str(tmp_path))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("ip"), bin_dir / "ip")
    no_nft = subprocess.run(["ip", "netns", "exec", net.ns["dev"], *ONEHOP, "client", "--whole-device",
                             "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "PATH": str(bin_dir)})
    for result, words in ((bad_iface, "nosuch0"), (no_nft, "nftables")):
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr
    assert net.run("dev", "nft", "list", "ruleset").stdout == before
    cleanup = net.run("dev", *ONEHOP, "client", "--whole-device", "--cleanup")
    assert cleanup.returncode == 0 and "no whole-device rules" in cleanup.stdout
