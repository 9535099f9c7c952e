"""Provisioning verbs: records, IDs, validation, conflicts and the audit trail."""

from __future__ import annotations

import re

import pytest

from tests.network.conftest import small_network

HEX16 = re.compile(r"[0-9A-F]{16}")


def test_sponsor_add_list_and_home_pages(cli):
    sponsor = cli.ok("sponsor", "add", "--name", "Acme", "--home-page", "https://acme.example/",
                     "--home-page", "DE=https://acme.example/de?a=b=c", "--mobile-home-page", "https://m.acme.example/")
    assert HEX16.fullmatch(sponsor["id"])
    assert sponsor["home_pages"] == {"None": ["https://acme.example/"], "DE": ["https://acme.example/de?a=b=c"]}
    assert sponsor["mobile_home_pages"] == {"None": ["https://m.acme.example/"]}
    assert cli.ok("sponsor", "list") == [sponsor]
    updated = cli.ok("sponsor", "homepage", "--sponsor", "Acme", "--add", "IR=https://acme.example/ir")
    assert updated["home_pages"]["IR"] == ["https://acme.example/ir"]
    updated = cli.ok("sponsor", "homepage", "--sponsor", sponsor["id"].lower(), "--remove", "https://acme.example/")
    assert "None" not in updated["home_pages"]
    assert "no such home page" in cli.fails("sponsor", "homepage", "--sponsor", "Acme", "--remove", "https://x.example/")


def test_sponsor_input_problems_are_listed_together(cli):
    err = cli.fails("sponsor", "add", "--name", " ", "--home-page", "ftp://x", "--home-page", "DE=not a url", rc=2)
    assert err.count("\n  - ") == 3 and "--name" in err and "--home-page" in err
    assert cli.ok("sponsor", "list") == []
    assert cli.ok("audit")[0]["action"] == "keys.create"  # the failed command left no trace


def test_duplicate_names_conflict(cli):
    cli.ok("sponsor", "add", "--name", "Acme")
    assert "already exists" in cli.fails("sponsor", "add", "--name", "Acme")
    cli.ok("channel", "add", "--name", "c1")
    assert "already exists" in cli.fails("channel", "add", "--name", "c1")


def test_channel_and_campaign(cli):
    channel = cli.ok("channel", "add", "--name", "email-1")
    assert HEX16.fullmatch(channel["id"]) and re.fullmatch(r"[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}", channel["site_id"])
    cli.ok("sponsor", "add", "--name", "Acme")
    campaign = cli.ok("campaign", "add", "--channel", "email-1", "--sponsor", "Acme", "--mechanism", "email",
                      "--email", "Get@Example.ORG", "--language", "fa")
    assert campaign["email_address"] == "get@example.org" and campaign["channel"] == channel["id"]
    assert "already belongs" in cli.fails("campaign", "add", "--channel", "email-1", "--sponsor", "Acme",
                                          "--mechanism", "email", "--email", "get@example.org")
    err = cli.fails("campaign", "add", "--channel", "email-1", "--sponsor", "Acme", "--mechanism", "email", rc=2)
    assert "--email" in err
    static = cli.ok("campaign", "add", "--channel", channel["id"], "--sponsor", "Acme",
                    "--mechanism", "static-download")
    assert [c["id"] for c in cli.ok("campaign", "list", "--channel", "email-1")] == [campaign["id"], static["id"]]
    assert "unknown channel" in cli.fails("campaign", "add", "--channel", "nope", "--sponsor", "Acme",
                                          "--mechanism", "static-download")


def test_host_add_validation_and_names_never_reused(cli):
    err = cli.fails("host", "add", "--name", "bad name", "--ip", "300.1.1.1", "--region", "Germany",
                    "--ssh-host-key", "nonsense", rc=2)
    for key in ("--name", "--ip", "--region", "--ssh-host-key"):
        assert key in err
    host = cli.ok("host", "add", "--name", "fra1", "--ip", "198.51.100.1", "--region", "de",
                  "--ssh-host-key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEt0")
    assert host["region"] == "DE" and host["ssh_host_key"].startswith("ssh-ed25519")
    assert "already has this IP" in cli.fails("host", "add", "--name", "fra2", "--ip", "198.51.100.1",
                                              "--region", "DE")
    cli.ok("host", "remove", "--name", "fra1")
    assert "never reused" in cli.fails("host", "add", "--name", "FRA1", "--ip", "198.51.100.9", "--region", "DE")
    assert [h["name"] for h in cli.ok("host", "list", "--all")] == ["fra1"]
    assert cli.ok("host", "list") == []


def test_server_ids_are_readable_aliases_and_records_hold_no_secrets(cli):
    net = small_network(cli)
    assert [s["id"] for s in net["embedded"]] == ["fra1-1", "fra1-2"]
    assert net["discovery"]["id"] == "fra1-3"
    server = net["embedded"][0]
    assert server["kind"] == "embedded" and server["capabilities"] == ["OSSH", "SSH", "ssh-api-requests"]
    assert net["discovery"]["kind"] == "discovery" and not net["discovery"]["embedded"]
    assert not {"ssh_password", "ssh_private_key", "obfuscated_ssh_key"} & set(server)
    listed = cli.ok("server", "list", "--channel", "email-1")
    assert [s["id"] for s in listed] == ["fra1-1", "fra1-2", "fra1-3"]


def test_duplicate_ip_port_clash_unknown_references(cli):
    small_network(cli)
    base = ("server", "add", "--host", "fra1", "--channel", "email-1")
    assert "fra1-1 already uses this IP" in cli.fails(*base, "--ip", "198.51.100.2")
    # two addresses on one host listening on one internal address: ports must differ
    cli.ok(*base, "--ip", "203.0.113.5", "--listen-ip", "10.0.0.5", "--ossh-port", "443")
    assert "port clash" in cli.fails(*base, "--ip", "203.0.113.6", "--listen-ip", "10.0.0.5", "--ossh-port", "443")
    assert "management SSH port" in cli.fails(*base, "--ossh-port", "22")  # on the host's own address
    assert "must differ" in cli.fails(*base, "--ip", "203.0.113.7", "--ossh-port", "53", "--ssh-port", "53", rc=2)
    assert "unknown channel" in cli.fails("server", "add", "--host", "fra1", "--channel", "nope")
    assert "unknown host" in cli.fails("server", "add", "--host", "nope", "--channel", "email-1")
    assert "only embedded servers" in cli.fails(*base, "--discovery-days", "3", "--permanent", rc=2)


def test_every_change_is_audited_with_actor_and_ids(cli, monkeypatch):
    monkeypatch.setenv("LOGNAME", "operator-7")  # what getpass.getuser() reads first
    net = small_network(cli)
    cli.ok("server", "retire", "--server", "fra1-1", "--reason", "blocked in IR")
    cli.ok("client-version", "add")
    cli.ok("settings", "set", "discovery-strategy", "classic")
    cli.ok("keys", "rotate", "--kind", "discovery_hmac")
    records = cli.ok("audit", "--limit", "100")
    actions = [r["action"] for r in reversed(records)]
    assert actions == ["schema.upgrade", "keys.create", "sponsor.add", "channel.add", "host.add", "server.add",
                       "server.add", "server.add", "server.retire", "client-version.add", "settings.set",
                       "keys.rotate"]
    mine = [r for r in records if r["action"] not in ("schema.upgrade", "keys.create")]
    assert all(r["actor"] == "operator-7" for r in mine)
    retire = next(r for r in records if r["action"] == "server.retire")
    assert retire["object_ids"] == ["fra1-1"] and retire["details"] == {"reason": "blocked in IR"}
    add = next(r for r in records if r["action"] == "sponsor.add")
    assert add["object_ids"] == [net["sponsor"]["id"]]
    text = str(records)
    assert "198.51.100" not in text  # no IP address in the audit trail


def test_client_versions_only_grow(cli):
    assert cli.ok("client-version", "add")["version"] == 1
    assert cli.ok("client-version", "add", "--version", "5", "--description", "x")["version"] == 5
    assert "only grow" in cli.fails("client-version", "add", "--version", "3")
    assert cli.ok("client-version", "add", "--platform", "Android")["version"] == 1
    assert "--platform" in cli.fails("client-version", "add", "--platform", "Linux", rc=2)
    assert [(v["platform"], v["version"]) for v in cli.ok("client-version", "list")] == [
        ("Android", 1), ("Other", 1), ("Other", 5)]


def test_keys_show_and_rotate(cli):
    before = cli.ok("keys", "show")
    assert sorted(before) == ["FeedbackEncryptionPublicKey", "RemoteServerListSignaturePublicKey",
                              "ServerEntrySignaturePublicKey", "UpgradeSignaturePublicKey"]
    cli.ok("keys", "rotate", "--kind", "server_entry")
    after = cli.ok("keys", "show")
    assert after["ServerEntrySignaturePublicKey"] != before["ServerEntrySignaturePublicKey"]
    assert after["RemoteServerListSignaturePublicKey"] == before["RemoteServerListSignaturePublicKey"]
    assert "--rsa-bits" in cli.fails("keys", "rotate", "--kind", "upgrade", "--rsa-bits", "1000", rc=2)


def test_settings(cli):
    assert cli.ok("settings", "show")["discovery-strategy"] == "consistent"
    cli.ok("settings", "set", "permanent-sample-size", "3")
    assert cli.ok("settings", "show")["permanent-sample-size"] == "3"
    assert "unknown setting" in cli.fails("settings", "set", "colour", "blue", rc=2)
    assert "consistent or classic" in cli.fails("settings", "set", "discovery-strategy", "random", rc=2)
    assert "no sponsor" in cli.fails("settings", "set", "default-sponsor", "0123456789ABCDEF", rc=2)


@pytest.mark.parametrize("args", [
    ("sponsor", "list"), ("channel", "list"), ("host", "list"), ("server", "list"), ("campaign", "list"),
    ("client-version", "list"), ("settings", "show"), ("audit",), ("keys", "show")])
def test_human_output_is_a_table_or_record(sqlite_cli, args):
    small_network(sqlite_cli)
    result = sqlite_cli.run(*args)
    assert result.rc == 0 and result.out.strip() and not result.out.lstrip().startswith(("{", "["))


def test_every_add_prints_the_created_record_with_its_id(cli):
    records = [cli.ok("sponsor", "add", "--name", "Acme"), cli.ok("channel", "add", "--name", "c"),
               cli.ok("campaign", "add", "--channel", "c", "--sponsor", "Acme", "--mechanism", "static-download"),
               cli.ok("host", "add", "--name", "h", "--ip", "192.0.2.1", "--region", "NL"),
               cli.ok("server", "add", "--host", "h", "--channel", "c"),
               cli.ok("client-version", "add")]
    assert [r["id"] for r in records][3:] == ["h", "h-1", "Other:1"]
    assert all(r["id"] for r in records)
