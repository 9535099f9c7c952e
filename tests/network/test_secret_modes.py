"""Issue 16 item 11: every file holding a secret is 0600 in a 0700 directory.

The commands that write secrets run here as an operator runs them; then each file's and
directory's mode is checked. Secrets: the network database (private keys, server
secrets), an export's psinet.json (the discovery HMAC key) and server.json files, a
generated server's server.json. Not secrets: server entries, responder.json and client
builds (public keys and entries handed to users), which stay readable.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from .conftest import TEST_RSA_BITS, NetworkCLI, small_network


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init_makes_the_default_database_private_even_after_the_client_made_its_directory(tmp_path):
    data = tmp_path / "xdg-data" / "onehop"  # XDG_DATA_HOME is private to the test (conftest)
    data.mkdir(parents=True, mode=0o755)     # the client's data directory, made first
    os.chmod(data, 0o755)
    from onehop.cli import main  # the default URL: no --db
    assert main(["network", "init", "--rsa-bits", TEST_RSA_BITS, "--json"]) == 0
    assert mode(data) == 0o700 and mode(data / "network.db") == 0o600


def test_init_creates_a_private_database_and_tightens_an_existing_file(tmp_path):
    db = tmp_path / "new" / "network.db"
    NetworkCLI(f"sqlite:///{db}").ok("init", "--rsa-bits", TEST_RSA_BITS)
    assert mode(db.parent) == 0o700 and mode(db) == 0o600
    os.chmod(db, 0o644)  # copied around, restored from a backup...
    NetworkCLI(f"sqlite:///{db}").ok("init")
    assert mode(db) == 0o600


def test_init_names_an_open_directory_it_did_not_create(tmp_path, caplog):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    with caplog.at_level(logging.WARNING):
        NetworkCLI(f"sqlite:///{shared / 'network.db'}").ok("init", "--rsa-bits", TEST_RSA_BITS)
    assert mode(shared) == 0o755 and mode(shared / "network.db") == 0o600  # someone else's directory
    assert f"chmod 700 {shared}" in caplog.text


def test_export_writes_secrets_0600_in_0700_directories(sqlite_cli, tmp_path):
    net = small_network(sqlite_cli)
    out = tmp_path / "export"
    sqlite_cli.ok("export", "--out", out)
    servers = [s["id"] for s in net["embedded"]] + [net["discovery"]["id"]]
    assert mode(out) == 0o700 and mode(out / "psinet.json") == 0o600
    for server in servers:
        assert mode(out / server) == 0o700
        assert mode(out / server / "server.json") == 0o600 and mode(out / server / "psinet.json") == 0o600
        assert mode(out / server / "server-entry.dat") == 0o644  # public
    # an export from before (0644 psinet, a 0755 server directory) is put right
    os.chmod(out / servers[0], 0o755)
    os.chmod(out / "psinet.json", 0o644)
    sqlite_cli.ok("export", "--out", out)
    assert mode(out / servers[0]) == 0o700 and mode(out / servers[0] / "psinet.json") == 0o600


def test_server_generate_writes_its_secrets_0600_in_a_0700_directory(tmp_path):
    from onehop.cli import main
    out = tmp_path / "srv"
    assert main(["server", "generate", "--ip", "198.51.100.9", "--out", str(out)]) == 0
    assert mode(out) == 0o700 and mode(out / "server.json") == 0o600
    assert mode(out / "server-entry.dat") == 0o644


def test_keys_and_settings_live_only_in_the_private_database(sqlite_cli, tmp_path):
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    sqlite_cli.ok("keys", "rotate", "--kind", "discovery_hmac")
    sqlite_cli.ok("keys", "show")
    after = sorted(p for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith("-journal"))
    assert after == [p for p in before if not p.name.endswith("-journal")]  # no key file appears
