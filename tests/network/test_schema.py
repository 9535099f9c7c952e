"""The database: init, the schema check every command makes, bad databases."""

from __future__ import annotations

import os
import stat

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from onehop.network import migrate
from onehop.network.db import Database
from onehop.network.models import schema_metadata
from tests.helpers.net import free_port
from tests.network.conftest import TEST_RSA_BITS, NetworkCLI

HEAD = "0005_providers"


def test_init_creates_schema_and_keys_then_is_idempotent(db_url):
    cli = NetworkCLI(db_url)
    first = cli.ok("init", "--rsa-bits", TEST_RSA_BITS)
    assert first["previous_revision"] is None
    assert first["revision"] == migrate.head_revision() == HEAD
    assert sorted(first["keys_created"]) == sorted(
        ["remote_server_list", "server_entry", "feedback", "upgrade", "discovery_hmac"])
    again = cli.ok("init", "--rsa-bits", TEST_RSA_BITS)
    assert again["previous_revision"] == again["revision"] and again["keys_created"] == []
    actions = [a["action"] for a in cli.ok("audit")]
    assert actions == ["keys.create", "schema.upgrade"]  # newest first; the second init changed nothing


def test_models_match_the_migrations(cli):
    engine = sa.create_engine(cli.url)
    with engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), schema_metadata())
    engine.dispose()
    assert diffs == []


def test_every_command_needs_init(db_url):
    cli = NetworkCLI(db_url)
    for args in (("sponsor", "list"), ("keys", "show"), ("export", "--out", "x")):
        assert "run onehop network init" in cli.fails(*args)


def test_a_database_behind_head_asks_for_init(cli):
    engine = sa.create_engine(cli.url)
    with engine.begin() as connection:
        migrate.downgrade(connection, "base")
    engine.dispose()
    assert "run onehop network init" in cli.fails("channel", "list")
    assert cli.ok("init", "--rsa-bits", TEST_RSA_BITS)["previous_revision"] is None
    assert cli.ok("channel", "list") == []


def test_an_unknown_revision_is_named(cli):
    engine = sa.create_engine(cli.url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    err = cli.fails("channel", "list")
    assert "9999_future" in err and HEAD in err and "run onehop network init" in err


def test_missing_sqlite_file_is_not_created(tmp_path):
    path = tmp_path / "nothing.db"
    err = NetworkCLI(f"sqlite:///{path}").fails("sponsor", "list")
    assert "no database" in err and "run onehop network init" in err
    assert not path.exists()


def test_sqlite_file_is_private(sqlite_url, sqlite_cli):
    path = sqlite_url.removeprefix("sqlite:///")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_default_database_lives_in_the_data_dir(tmp_path, monkeypatch):
    from onehop.cli import main
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert main(["network", "init", "--rsa-bits", TEST_RSA_BITS]) == 0
    assert (tmp_path / "data" / "onehop" / "network.db").is_file()


def test_corrupt_database_is_a_clear_error(tmp_path):
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not SQLite at all" * 100)
    cli = NetworkCLI(f"sqlite:///{path}")
    err = cli.fails("sponsor", "list")
    assert "corrupt" in err and "Traceback" not in err
    err = cli.fails("init")
    assert "corrupt" in err
    assert path.read_bytes() == b"this is not SQLite at all" * 100  # nothing written


def test_unreachable_postgresql_is_a_clear_error():
    port = free_port()  # nothing listens there
    err = NetworkCLI(f"postgresql+psycopg://u:secret@127.0.0.1:{port}/db").fails("sponsor", "list")
    assert "127.0.0.1" in err and "secret" not in err and "Traceback" not in err


def test_bad_database_urls_are_config_errors(tmp_path):
    assert "--db" in NetworkCLI("not a url").fails("sponsor", "list", rc=2)
    assert "unsupported database" in NetworkCLI("mysql://x/y").fails("sponsor", "list", rc=2)


def test_schema_check_reports_revisions(cli):
    db = Database.open(cli.url)
    try:
        assert db.revisions() == (HEAD, HEAD)
    finally:
        db.close()


def test_the_history_is_linear_and_upgrades_step_by_step(db_url):
    """Every revision has one parent, and a database at any revision upgrades to head
    (and downgrades back) without losing the rows it had."""
    from alembic.script import ScriptDirectory
    script = ScriptDirectory.from_config(migrate.alembic_config())
    chain = [r.revision for r in script.walk_revisions()][::-1]
    assert chain == ["0001_network", "0002_stats", "0003_feedback", "0004_client_builds", "0005_providers"]
    assert all(len(r._all_down_revisions) <= 1 for r in script.walk_revisions())
    engine = sa.create_engine(db_url)
    with engine.begin() as connection:
        migrate.upgrade(connection, "0001_network")
        connection.execute(sa.text("INSERT INTO network_settings (name, value) VALUES ('build-platform', 'Other')"))
    for revision in chain[1:]:
        with engine.begin() as connection:
            migrate.upgrade(connection, revision)
    with engine.begin() as connection:
        assert migrate.current_revision(connection) == HEAD
        migrate.downgrade(connection, "0001_network")
        tables = set(sa.inspect(connection).get_table_names())
        assert not tables & {"stats_events", "stats_log_files", "feedback_records", "client_builds"}
        assert connection.execute(sa.text("SELECT value FROM network_settings")).scalar() == "Other"
    engine.dispose()
