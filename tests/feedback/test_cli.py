"""``onehop feedback send|flush|collect|decrypt|list`` as scripts use them."""

from __future__ import annotations

import asyncio
import json
import os

from onehop.cli import main
from onehop.client.transfer_urls import encode_transfer_url
from onehop.core.feedbackcrypto import encrypt
from tests.conftest import load_vectors
from tests.feedback.conftest import sqlite_db


def write_config(tmp_path, public: str, url: str) -> str:
    path = tmp_path / "client.json"
    path.write_text(json.dumps({"DataRootDirectory": str(tmp_path / "data"), "ClientVersion": 7,
                                "FeedbackUploadURLs": [encode_transfer_url(url)],
                                "FeedbackEncryptionPublicKey": public}))
    return str(path)


async def run(argv: list[str]) -> int:
    return await asyncio.to_thread(main, argv)


async def test_send_collect_list(tmp_path, feedback_keys, upload_server, capsys):
    private, public = feedback_keys
    key_file = tmp_path / "feedback.pem"
    key_file.write_text(private)
    config = write_config(tmp_path, public, upload_server.url("/fb"))
    from onehop.client.datastore import Datastore
    from tests.helpers.builders import make_entry
    store = Datastore(str(tmp_path / "data"))          # the client knows this server
    store.import_entries([make_entry("192.0.2.50")], "EMBEDDED")
    store.close()
    (tmp_path / "ids.json").write_text(json.dumps({"192.0.2.50": "host-7"}))
    assert await run(["feedback", "send", "--message", "192.0.2.50 cannot reach 203.0.113.8",
                      "--email", "a@b.c", "--config", config, "--json"]) == 0
    sent = json.loads(capsys.readouterr().out)
    assert sent["uploaded"] and sent["pending"] == []
    db = sqlite_db(tmp_path)
    assert await run(["feedback", "collect", "--db", db, "--from", upload_server.upload_dir,
                      "--key", str(key_file), "--server-ids", str(tmp_path / "ids.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stored"] == [f"fb/{sent['upload_id']}"]
    assert await run(["feedback", "list", "--db", db, "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["message"] == "[server:host-7] cannot reach [ip]" and record["email"] == "a@b.c"
    assert record["server_ids"] == ["host-7"]
    assert record["client_version"] == "7" and record["document"]["Metadata"]["id"] == sent["upload_id"]
    assert await run(["feedback", "list", "--db", db]) == 0
    assert "servers=host-7" in capsys.readouterr().out


async def test_send_while_offline_exits_75_and_flush_uploads_later(tmp_path, feedback_keys):
    from tests.helpers.net import free_port
    from tests.feedback.conftest import UploadServer
    _, public = feedback_keys
    port = free_port("127.0.0.1")
    config = write_config(tmp_path, public, f"http://127.0.0.1:{port}/fb")
    assert await run(["feedback", "send", "--message", "offline", "--config", config,
                      "--attempts", "1", "--no-diagnostics"]) == 75
    assert len(os.listdir(tmp_path / "data" / "feedback" / "pending")) == 1
    server = UploadServer(str(tmp_path / "uploads"))
    await server.start(port)
    try:
        # the default config has no upload URL: a configuration error, nothing lost
        assert await run(["feedback", "flush", "--data-dir", str(tmp_path / "data")]) == 2
        assert await run(["feedback", "flush", "--config", config, "--attempts", "1"]) == 0
        assert os.listdir(tmp_path / "data" / "feedback" / "pending") == []
    finally:
        await server.close()


async def test_collect_reports_rejections_and_exits_1(tmp_path, feedback_keys, capsys):
    private, public = feedback_keys
    key_file = tmp_path / "k.pem"
    key_file.write_text(private)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "good").write_bytes(encrypt(b'{"Feedback": {"Message": {"text": "ok"}}}', public, os.urandom))
    (uploads / "bad").write_bytes(b'{"iv": "x"}')
    db = sqlite_db(tmp_path, "n.db")
    assert await run(["feedback", "collect", "--db", db, "--from", str(uploads), "--key", str(key_file)]) == 1
    captured = capsys.readouterr()
    assert "stored 1" in captured.out and "rejected bad: invalid_blob" in captured.err


def test_decrypt_a_go_vector(tmp_path, capsys):
    case = load_vectors("feedback")["cases"][0]
    (tmp_path / "key.pem").write_text(case["private_key_pem_pkcs8"])
    (tmp_path / "blob").write_text(case["blob_json"])
    assert main(["feedback", "decrypt", "--key", str(tmp_path / "key.pem"), str(tmp_path / "blob"), "--raw"]) == 0
    assert capsys.readouterr().out.strip() == case["plaintext"]
    assert main(["feedback", "decrypt", "--key", str(tmp_path / "key.pem"), str(tmp_path / "blob")]) == 0
    assert json.loads(capsys.readouterr().out)["Feedback"]["Message"]["text"] == "connection slow"


def test_decrypt_a_tampered_blob_fails_clearly(tmp_path, capsys):
    case = load_vectors("feedback")["cases"][0]
    (tmp_path / "key.pem").write_text(case["private_key_pem_pkcs1"])
    blob = json.loads(case["blob_json"])
    blob["contentMac"] = "A" + blob["contentMac"][1:]
    (tmp_path / "blob").write_text(json.dumps(blob))
    assert main(["feedback", "decrypt", "--key", str(tmp_path / "key.pem"), str(tmp_path / "blob")]) == 1
    assert "bad_mac" in capsys.readouterr().err


def test_a_missing_key_file_is_a_config_error(tmp_path, capsys):
    assert main(["feedback", "decrypt", "--key", str(tmp_path / "nope"), "-"]) == 2
    assert "--key" in capsys.readouterr().err


def test_db_is_refused_in_words_before_or_after_a_verb_that_does_not_use_it(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'network.db'}"
    for argv in (["feedback", "--db", db, "flush"], ["feedback", "flush", "--db", db],
                 ["feedback", "decrypt", "--key", "k.pem", "blob", "--db", db],
                 ["feedback", "receive", "--listen", "127.0.0.1:0", "--to", str(tmp_path), "--db", db]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "--db: only collect and list use the network database" in err, (argv, err)
        assert "unrecognized arguments" not in err


def test_list_on_an_empty_database_says_so(tmp_path, capsys):
    db = sqlite_db(tmp_path)
    assert main(["network", "--db", db, "init", "--rsa-bits", "2048"]) == 0
    capsys.readouterr()
    assert main(["feedback", "list", "--db", db]) == 0
    assert capsys.readouterr().out == "no feedback stored\n"
