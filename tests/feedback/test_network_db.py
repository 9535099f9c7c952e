"""Feedback in the network database: the table comes from its migrations, ``collect``
decrypts with the network's feedback keys (retired ones too) and names every server the
network ever had by its ID; ``list`` reads it back. On SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest

from onehop.cli import main
from onehop.core.feedbackcrypto import encrypt
from tests.network.conftest import TEST_RSA_BITS, NetworkCLI, cli, db_url  # noqa: F401  (fixtures)

USER_IP = "203.0.113.99"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def document(message: str) -> bytes:
    return json.dumps({"Metadata": {"platform": "android", "version": 4, "id": os.urandom(8).hex()},
                       "Feedback": {"email": "", "Message": {"text": message}}}).encode()


def network_with_servers(cli) -> tuple[dict, dict]:  # noqa: F811
    cli.ok("channel", "add", "--name", "c1")
    cli.ok("host", "add", "--name", "ams1", "--ip", "192.0.2.1", "--region", "NL")
    old = cli.ok("server", "add", "--host", "ams1", "--channel", "c1", "--ip", "192.0.2.50")
    cli.ok("server", "retire", "--server", old["id"])
    new = cli.ok("server", "add", "--host", "ams1", "--channel", "c1", "--ip", "192.0.2.51")
    return old, new


def test_collect_uses_the_network_key_and_every_server_ever(cli, tmp_path):  # noqa: F811
    old, new = network_with_servers(cli)
    public = cli.ok("keys", "show")["FeedbackEncryptionPublicKey"]
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "one").write_bytes(encrypt(document(f"192.0.2.50 and 192.0.2.51 fail from {USER_IP}"),
                                          public, os.urandom))
    rc, out, err = run("feedback", "collect", "--db", cli.url, "--from", str(uploads), "--json")
    assert rc == 0, err
    assert json.loads(out)["stored"] == ["one"] and os.listdir(uploads) == []
    rc, out, err = run("feedback", "list", "--db", cli.url, "--json")
    (record,) = json.loads(out)
    assert record["message"] == f"[server:{old['id']}] and [server:{new['id']}] fail from [ip]"
    assert record["server_ids"] == sorted([old["id"], new["id"]])
    assert USER_IP not in out


def test_feedback_made_before_a_key_rotation_still_decrypts(cli, tmp_path):  # noqa: F811
    before = cli.ok("keys", "show")["FeedbackEncryptionPublicKey"]
    cli.ok("keys", "rotate", "--kind", "feedback", "--rsa-bits", TEST_RSA_BITS)
    after = cli.ok("keys", "show")["FeedbackEncryptionPublicKey"]
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "old").write_bytes(encrypt(document("made with the old key"), before, os.urandom))
    (uploads / "new").write_bytes(encrypt(document("made with the new key"), after, os.urandom))
    (uploads / "tampered").write_bytes(b'{"iv": "AAAA"}')
    rc, out, _ = run("feedback", "collect", "--db", cli.url, "--from", str(uploads), "--json")
    report = json.loads(out)
    assert rc == 1 and sorted(report["stored"]) == ["new", "old"]
    assert [r["key"] for r in report["rejected"]] == ["tampered"] and os.listdir(uploads) == ["tampered"]
    rc, out, _ = run("feedback", "list", "--db", cli.url, "--json")
    assert sorted(r["message"] for r in json.loads(out)) == ["made with the new key", "made with the old key"]


def test_a_key_file_overrides_the_network_key(cli, tmp_path, feedback_keys):  # noqa: F811
    private, public = feedback_keys
    (tmp_path / "k.pem").write_text(private)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "x").write_bytes(encrypt(document("for the file key"), public, os.urandom))
    rc, out, _ = run("feedback", "collect", "--db", cli.url, "--from", str(uploads), "--key",
                     str(tmp_path / "k.pem"), "--json")
    assert rc == 0 and json.loads(out)["stored"] == ["x"]


def test_the_table_belongs_to_the_migrations(db_url):  # noqa: F811
    rc, _, err = run("feedback", "list", "--db", db_url)
    assert rc == 1 and "run onehop network init" in err
    from onehop.feedback.sqlstore import SqlFeedbackStore
    from onehop.network.errors import SchemaError
    with pytest.raises(SchemaError):
        SqlFeedbackStore.open(db_url)
    NetworkCLI(db_url).ok("init", "--rsa-bits", TEST_RSA_BITS)
    rc, out, _ = run("feedback", "list", "--db", db_url, "--json")
    assert rc == 0 and json.loads(out) == []
