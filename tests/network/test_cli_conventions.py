"""Issue 16 item 10: one convention for the operator's command line (docs/cli.md).

``--db`` is accepted before and after the verb (network and feedback alike); the thing
a verb acts on is positional, and its older ``--flag`` spelling still works.
"""

from __future__ import annotations

import contextlib
import io
import json

from onehop.cli import main

from .conftest import Result, small_network


def run(*args: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 2
    return Result(rc, out.getvalue(), err.getvalue())


def test_db_before_or_after_the_verb(sqlite_cli):
    sqlite_cli.ok("sponsor", "add", "Acme")
    # the default database does not exist (XDG_DATA_HOME is private): only --db can find it
    for args in (("network", "--db", sqlite_cli.url, "sponsor", "list", "--json"),
                 ("network", "sponsor", "list", "--db", sqlite_cli.url, "--json"),
                 ("network", "sponsor", "list", "--json", f"--db={sqlite_cli.url}")):
        result = run(*args)
        assert result.rc == 0, (args, result.err)
        assert [s["name"] for s in json.loads(result.out)] == ["Acme"]
    assert "no database" in run("network", "sponsor", "list").err


def test_feedback_takes_db_before_or_after_the_verb(sqlite_cli):
    for args in (("feedback", "--db", sqlite_cli.url, "list", "--json"),
                 ("feedback", "list", "--db", sqlite_cli.url, "--json")):
        result = run(*args)
        assert result.rc == 0, (args, result.err)
        assert json.loads(result.out) == []
    refused = run("feedback", "--db", sqlite_cli.url, "send", "--message", "hi")
    assert refused.rc == 2 and "--db" in refused.err and "Traceback" not in refused.err


def test_the_object_of_a_verb_is_positional_and_the_old_flag_still_works(sqlite_cli):
    sqlite_cli.ok("sponsor", "add", "Acme")
    sqlite_cli.ok("sponsor", "add", "--name", "Other")
    sqlite_cli.ok("channel", "add", "email-1")
    sqlite_cli.ok("host", "add", "fra1", "--ip", "198.51.100.1", "--region", "DE")
    ids = [sqlite_cli.ok("server", "add", "--host", "fra1", "--channel", "email-1", "--ip",
                         f"198.51.100.{n}")["id"] for n in (2, 3)]
    sqlite_cli.ok("server", "retire", ids[0], "--reason", "positional")
    sqlite_cli.ok("server", "retire", "--server", ids[1])
    listed = {s["id"]: s for s in sqlite_cli.ok("server", "list", "--all")}
    assert all(listed[i]["retired_at"] for i in ids)
    sqlite_cli.ok("sponsor", "homepage", "Acme", "--add", "https://acme.example/")
    sqlite_cli.ok("host", "remove", "--name", "fra1")


def test_a_missing_object_is_a_usage_error_naming_it(sqlite_cli):
    err = sqlite_cli.fails("server", "retire", rc=2)
    assert "required: SERVER" in err and "usage: onehop network server retire" in err
    assert "required: NAME" in sqlite_cli.fails("sponsor", "add", rc=2)


def test_the_old_spellings_in_the_fixtures_still_work(sqlite_cli):
    small_network(sqlite_cli)


def test_plot_without_matplotlib_names_the_extra_before_any_work(sqlite_cli, monkeypatch, tmp_path):
    """Issue 16 item 12: it said `pip install matplotlib`, which leaves the extras unknown."""
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # "import matplotlib" now fails
    err = sqlite_cli.fails("stats", "report", "--plot", tmp_path / "r.png", rc=2)
    assert "--plot" in err and "pip install 'onehop[lab]'" in err and "Traceback" not in err
    # the lab checks before running scenarios (minutes), not after
    result = run("lab", "run", "all", "--plot", tmp_path / "lab.png")
    assert result.rc == 2 and "pip install 'onehop[lab]'" in result.err
    assert "onehop lab:" not in result.out and not (tmp_path / "lab.png").exists()


def test_a_missing_postgresql_driver_names_the_extra(monkeypatch):
    """A sibling of item 12: the PostgreSQL driver comes with the network extra; say so."""
    import sys
    monkeypatch.setitem(sys.modules, "psycopg", None)
    result = run("network", "--db", "postgresql+psycopg://ops@db.example/onehop", "sponsor", "list")
    assert result.rc == 2 and "pip install 'onehop[network]'" in result.err and "Traceback" not in result.err
