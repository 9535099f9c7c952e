"""Fixtures for the network database tests: both backends, a CLI runner, fast keys.

``db_url`` is parametrised over SQLite (a file per test) and PostgreSQL (a fresh schema
per test, selected with ``search_path`` in the URL, dropped afterwards). PostgreSQL
comes from ONEHOP_TEST_POSTGRES_URL; without it the PostgreSQL cases are skipped,
unless ONEHOP_CI=1, where a missing database is a failure.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from onehop.cli import main

POSTGRES_ENV = "ONEHOP_TEST_POSTGRES_URL"
TEST_RSA_BITS = "2048"  # 4096-bit keys are the default; tests need speed, not strength


def postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("ONEHOP_CI") == "1":
            pytest.fail(f"{POSTGRES_ENV} is not set but ONEHOP_CI=1: the PostgreSQL tests must run in CI")
        pytest.skip(f"{POSTGRES_ENV} not set (eval \"$(.ci/start-postgres.sh)\" to run these)")
    return url


@contextlib.contextmanager
def postgres_schema():
    """A URL whose connections use a brand-new schema; the schema is dropped afterwards."""
    base = postgres_base_url()
    schema = f"onehop_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        pytest.fail(f"{POSTGRES_ENV} is set but PostgreSQL is unreachable: {exc.orig}")
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'network.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'network.db'}"


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


class NetworkCLI:
    """Runs ``onehop network --db URL ...`` in-process and captures its output."""

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, *args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(["network", "--db", self.url, *map(str, args)])
            except SystemExit as exc:  # argparse errors
                rc = exc.code if isinstance(exc.code, int) else 2
        return Result(rc, out.getvalue(), err.getvalue())

    def ok(self, *args: str):
        """Run with --json; assert success; return the parsed output."""
        result = self.run(*args, "--json")
        assert result.rc == 0, result.err
        return result.json()

    def fails(self, *args: str, rc: int = 1) -> str:
        result = self.run(*args)
        assert result.rc == rc, (result.rc, result.out, result.err)
        return result.err


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    """Keep the default database path and the build cache inside the test's tmp dir."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def cli(db_url) -> NetworkCLI:
    """An initialised database on each backend."""
    runner = NetworkCLI(db_url)
    runner.ok("init", "--rsa-bits", TEST_RSA_BITS)
    return runner


@pytest.fixture
def sqlite_cli(sqlite_url) -> NetworkCLI:
    runner = NetworkCLI(sqlite_url)
    runner.ok("init", "--rsa-bits", TEST_RSA_BITS)
    return runner


def small_network(cli: NetworkCLI, *, ip_base: str = "198.51.100") -> dict:
    """A sponsor, a channel, a host and two embedded servers plus one discovery server."""
    sponsor = cli.ok("sponsor", "add", "--name", "Acme", "--home-page", "https://acme.example/")
    channel = cli.ok("channel", "add", "--name", "email-1")
    cli.ok("host", "add", "--name", "fra1", "--ip", f"{ip_base}.1", "--region", "DE", "--provider", "linode")
    embedded = [cli.ok("server", "add", "--host", "fra1", "--channel", "email-1", "--ip", f"{ip_base}.{n}",
                       "--ssh-port", "2222") for n in (2, 3)]
    discovery = cli.ok("server", "add", "--host", "fra1", "--channel", "email-1", "--ip", f"{ip_base}.4",
                       "--discovery-days", "4")
    return {"sponsor": sponsor, "channel": channel, "embedded": embedded, "discovery": discovery}
