"""Replacing a channel's servers, retiring, pruning and removing hosts."""

from __future__ import annotations

from datetime import datetime, timedelta, UTC

from onehop.network import lifecycle, lookup, servers
from onehop.network.audit import Context
from onehop.network.db import Database
from tests.network.conftest import small_network

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def kinds(cli) -> dict[str, str]:
    return {s["id"]: s["kind"] for s in cli.ok("server", "list", "--all")}


def test_new_embedded_servers_unembed_the_old_non_permanent_ones(cli):
    small_network(cli)
    base = ("server", "add", "--host", "fra1", "--channel", "email-1")
    cli.ok(*base, "--ip", "198.51.100.10", "--permanent")
    new = cli.ok(*base, "--ip", "198.51.100.11")
    result = cli.ok("channel", "replace", "--channel", "email-1", "--server", new["id"])
    assert result["unembedded"] == ["fra1-1", "fra1-2"] and result["windows_ended"] == []
    assert kinds(cli) == {"fra1-1": "propagation", "fra1-2": "propagation", "fra1-3": "discovery",
                          "fra1-4": "permanent", "fra1-5": "embedded"}


def test_new_discovery_servers_end_the_current_windows(cli):
    net = small_network(cli)
    new = cli.ok("server", "add", "--host", "fra1", "--channel", "email-1", "--ip", "198.51.100.12",
                 "--discovery-days", "4", "--replace")
    listed = {s["id"]: s for s in cli.ok("server", "list")}
    old = listed[net["discovery"]["id"]]
    assert old["discovery_end"] <= new["discovery_start"]  # ended when the new one began
    assert listed[new["id"]]["discovery_end"] > new["discovery_start"]
    assert kinds(cli)["fra1-1"] == "embedded"  # discovery replacements leave embedded servers alone


def test_replace_refuses_servers_of_other_channels(cli):
    small_network(cli)
    cli.ok("channel", "add", "--name", "other")
    assert "not a live server of channel" in cli.fails("channel", "replace", "--channel", "other",
                                                       "--server", "fra1-1")


def test_retired_ids_are_never_reused(cli):
    small_network(cli)
    retired = cli.ok("server", "retire", "--server", "fra1-3")
    assert retired["kind"] == "retired" and retired["retired_at"]
    assert "already retired" in cli.fails("server", "retire", "--server", "fra1-3")
    # the retired server's IP may serve again, under a new ID
    again = cli.ok("server", "add", "--host", "fra1", "--channel", "email-1", "--ip", "198.51.100.4")
    assert again["id"] == "fra1-4"
    assert [s["id"] for s in cli.ok("server", "list")] == ["fra1-1", "fra1-2", "fra1-4"]


def test_host_remove_retires_its_servers(cli):
    small_network(cli)
    result = cli.ok("host", "remove", "--name", "fra1")
    assert result["retired_servers"] == ["fra1-1", "fra1-2", "fra1-3"]
    assert cli.ok("server", "list") == []
    assert "removed host" in cli.fails("server", "add", "--host", "fra1", "--channel", "email-1")


def _at(db: Database, now: datetime, work):
    with db.transaction() as session:
        return work(session, Context(actor="test", now=now))


def test_prune_by_age_and_archive_empty_hosts(cli):
    db = Database.open(cli.url)
    try:
        cli.ok("channel", "add", "--name", "c", "--max-discovery-age-days", "10",
               "--max-propagation-age-days", "20")
        cli.ok("host", "add", "--name", "h1", "--ip", "192.0.2.1", "--region", "NL")
        cli.ok("host", "add", "--name", "h2", "--ip", "192.0.2.2", "--region", "NL")

        def add(host, ip, **spec):
            return lambda s, ctx: servers.add_server(s, ctx, lookup.host(s, host), lookup.channel(s, "c"),
                                                     servers.ServerSpec(ip=ip, **spec)).id
        old_discovery = _at(db, T0, add("h1", "192.0.2.10", discovery_days=4))
        old_embedded = _at(db, T0, add("h2", "192.0.2.20"))
        permanent = _at(db, T0, add("h2", "192.0.2.21", permanent=True))
        replacement = _at(db, T0 + timedelta(days=1), add("h2", "192.0.2.22"))
        _at(db, T0 + timedelta(days=1), lambda s, ctx: lifecycle.replace(
            s, ctx, lookup.channel(s, "c"), [lookup.server(s, replacement)]))

        early = _at(db, T0 + timedelta(days=13), lambda s, ctx: lifecycle.prune(s, ctx))
        assert early.retired == ()  # window ended day 4: 9 days ago; un-embedded 12 days ago
        dry = _at(db, T0 + timedelta(days=15), lambda s, ctx: lifecycle.prune(s, ctx, dry_run=True))
        assert dry.retired == (old_discovery,) and dry.hosts_removed == ()
        later = _at(db, T0 + timedelta(days=22), lambda s, ctx: lifecycle.prune(s, ctx))
        assert set(later.retired) == {old_discovery, old_embedded}
        assert later.hosts_removed == ("h1",)  # h2 still has live servers
    finally:
        db.close()
    assert kinds(cli)[permanent] == "permanent" and kinds(cli)[replacement] == "embedded"
    assert [h["name"] for h in cli.ok("host", "list")] == ["h2"]
    assert cli.ok("audit")[0]["action"] == "prune"


def test_prune_cli_reports_nothing_to_do(cli):
    small_network(cli)
    assert cli.ok("prune", "--dry-run") == {"dry_run": True, "retired": {}, "hosts_removed": []}
