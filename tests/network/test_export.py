"""``export``: per-server directories that servers accept, the psinet snapshot, the
responder config, atomic change-only writes."""

from __future__ import annotations

import json
import os
import stat
from datetime import timedelta

import pytest

from onehop.core.serverentry import decode_server_entry, verify_server_entry_signature
from onehop.server.config import load_server_config
from onehop.server.discovery import discovery_servers
from onehop.server.psinet import PsinetStore, parse_psinet
from tests.network.conftest import small_network


def snapshot(root) -> dict[str, tuple[int, int]]:
    """relative path -> (inode, mtime_ns) of every file."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            info = os.stat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (info.st_ino, info.st_mtime_ns)
    return out


def test_layout_modes_and_server_configs(cli, tmp_path):
    net = small_network(cli)
    out = tmp_path / "export"
    result = cli.ok("export", "--out", out)
    ids = [s["id"] for s in net["embedded"]] + [net["discovery"]["id"]]
    assert result["servers"] == ids and result["removed"] == []
    keys = cli.ok("keys", "show")
    for server_id in ids:
        directory = out / server_id
        assert sorted(os.listdir(directory)) == ["psinet.json", "server-entry.dat", "server.json"]
        assert stat.S_IMODE(os.stat(directory / "server.json").st_mode) == 0o600
        config = load_server_config(directory / "server.json")  # what `onehop server run` does
        entry = decode_server_entry((directory / "server-entry.dat").read_text().strip())
        verify_server_entry_signature(entry, keys["ServerEntrySignaturePublicKey"])
        assert config.server_ip_address == entry.ip_address
        assert config.own_encoded_server_entries == {entry.tag: (directory / "server-entry.dat").read_text().strip()}
        assert config.host_id == "fra1" and entry.region == "DE" and entry.provider_id
        assert config.path(config.psinet_database_filename) == str(directory / "psinet.json")
        expected_ports = {"OSSH": entry.ssh_obfuscated_port, "SSH": entry.ssh_port}
        assert config.tunnel_protocol_ports == {k: v for k, v in expected_ports.items() if v}
        assert os.path.samefile(directory / "psinet.json", out / "psinet.json")


def test_psinet_snapshot_is_what_servers_parse(cli, tmp_path):
    net = small_network(cli)
    cli.ok("client-version", "add")
    cli.ok("client-version", "add")
    cli.ok("settings", "set", "default-sponsor", net["sponsor"]["id"])
    out = tmp_path / "export"
    cli.ok("export", "--out", out)
    raw = json.loads((out / "fra1-1" / "psinet.json").read_text())
    psinet = parse_psinet(raw)
    assert psinet.homepages(net["sponsor"]["id"], "US", False) == ["https://acme.example/"]
    assert psinet.default_sponsor_id == net["sponsor"]["id"]
    assert psinet.upgrade_client_version("1", "Other") == "2"
    assert psinet.discovery["strategy"] == "consistent" and psinet.discovery["hmac_key"]
    assert len(psinet.valid_server_entry_tags) == 3
    (found,) = discovery_servers(psinet)  # only the discovery server, with its window
    assert found.ip_address == "198.51.100.4"
    assert found.window_end - found.window_start == timedelta(days=4)
    text = json.dumps(raw)
    assert "Acme" not in text and "linode" not in text  # no names or provider in the servers' copy
    config = json.loads((out / "fra1-1" / "server.json").read_text())
    assert config["DiscoveryValueHMACKey"] == psinet.discovery["hmac_key"]


def test_second_export_rewrites_nothing_and_changes_touch_only_what_changed(cli, tmp_path):
    small_network(cli)
    out = tmp_path / "export"
    cli.ok("export", "--out", out)
    before = snapshot(out)
    again = cli.ok("export", "--out", out)
    assert again["written"] == [] and snapshot(out) == before
    store = PsinetStore(str(out / "fra1-1" / "psinet.json"))
    assert not store.reload_if_changed()
    cli.ok("client-version", "add")  # only the psinet snapshot changes
    changed = cli.ok("export", "--out", out)
    assert changed["written"] == ["fra1-1/psinet.json", "fra1-2/psinet.json", "fra1-3/psinet.json", "psinet.json"]
    after = snapshot(out)
    assert after["fra1-1/server.json"] == before["fra1-1/server.json"]
    assert store.reload_if_changed() and store.snapshot.client_versions == {"Other": (1,)}


def test_retired_server_directories_are_removed(cli, tmp_path):
    small_network(cli)
    out = tmp_path / "export"
    (out / "unrelated").mkdir(parents=True)
    cli.ok("export", "--out", out)
    cli.ok("server", "retire", "--server", "fra1-2")
    result = cli.ok("export", "--out", out)
    assert result["removed"] == ["fra1-2"] and not (out / "fra1-2").exists()
    assert (out / "unrelated").is_dir()
    psinet = parse_psinet(json.loads((out / "psinet.json").read_text()))
    assert len(psinet.valid_server_entry_tags) == 2  # clients will prune the retired server


def test_responder_config_schema(cli, tmp_path):
    net = small_network(cli)
    cli.ok("sponsor", "add", "--name", "Other Sponsor")
    email = cli.ok("campaign", "add", "--channel", "email-1", "--sponsor", "Acme", "--mechanism", "email",
                   "--email", "Get@Example.org", "--language", "fa")
    cli.ok("campaign", "add", "--channel", "email-1", "--sponsor", "Other Sponsor", "--mechanism",
           "static-download")
    out = tmp_path / "export"
    cli.ok("export", "--out", out, "--base-url", "https://s3.amazonaws.com/bucket")
    document = json.loads((out / "mail" / "responder.json").read_text())
    assert document == {"version": 1, "addresses": {"get@example.org": {
        "campaign_id": email["id"], "channel_id": net["channel"]["id"], "channel_name": "email-1",
        "sponsor_id": net["sponsor"]["id"], "sponsor_name": "Acme", "language": "fa",
        "links": [f"https://s3.amazonaws.com/bucket/{email['site_id']}/onehop-client.pyz"],
        "attachment": None}}}
    mail_config = pytest.importorskip("onehop.mail.config")  # the responder (issue 5) reads it as is
    loaded = mail_config.load_responder_config(out / "mail" / "responder.json")
    assert list(loaded.campaigns) == ["get@example.org"]


def test_responder_links_are_web_urls_only(cli, tmp_path):
    small_network(cli)
    cli.ok("campaign", "add", "--channel", "email-1", "--sponsor", "Acme", "--mechanism", "email",
           "--email", "get@example.org")
    cli.ok("publish", "--to", tmp_path / "site", "--no-builds")  # a directory: file:// URLs
    out = tmp_path / "export"
    cli.ok("export", "--out", out)
    document = json.loads((out / "mail" / "responder.json").read_text())
    assert document["addresses"]["get@example.org"]["links"] == []


def test_export_to_an_unwritable_place_is_a_clear_error(cli, tmp_path):
    small_network(cli)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = cli.fails("export", "--out", blocker / "sub")
    assert "cannot create" in err and "Traceback" not in err


def test_exported_configs_log_where_stats_ingest_reads_and_retiring_keeps_the_log(cli, tmp_path):
    """Issue 16: exported configs had no LogFilename, so `stats ingest` had nothing to read."""
    from onehop.network.deploy.layout import Layout, deployed_config
    from onehop.server.events import EventLog
    small_network(cli)
    out = tmp_path / "export"
    cli.ok("export", "--out", out)
    config = load_server_config(out / "fra1-2" / "server.json")
    path = config.path(config.log_filename)
    assert os.path.normpath(path) == str(out / "logs" / "fra1-2" / "events.jsonl")
    events = EventLog(path, host_id=config.host_id)  # what `onehop server run` opens
    events.irregular_tunnel("OSSH", "handshake timeout")
    events.close()
    result = cli.ok("stats", "ingest", "--from", out / "logs")
    assert result["events_added"] == {"irregular_tunnel": 1}
    assert result["malformed_lines"] == 0 and result["unresolved_events"] == 0
    # a deployed host's log has the same shape below its ROOT/logs
    deployed = json.loads(deployed_config((out / "fra1-2" / "server.json").read_bytes(), Layout("/opt/onehop"),
                                          "fra1-2", []))
    assert os.path.relpath(deployed["LogFilename"], "/opt/onehop") == os.path.relpath(
        os.path.normpath(path), out)
    cli.ok("server", "retire", "--server", "fra1-2")
    cli.ok("export", "--out", out)
    assert not (out / "fra1-2").exists() and (out / "logs" / "fra1-2" / "events.jsonl").is_file()
