"""The operator half: collect from a directory or S3, MAC before decrypting, redaction with
server IDs, idempotence, and bad uploads rejected while every good one is stored."""

from __future__ import annotations

import json
import os
from datetime import UTC

import pytest

from onehop.client.feedback.send import send_feedback
from onehop.client.feedback.upload import UploadPolicy
from onehop.core.feedbackcrypto import encrypt
from onehop.feedback.collect import collect
from onehop.feedback.errors import SourceError
from onehop.feedback.sources import DirectorySource, S3Source, open_source
from tests.conftest import load_vectors
from tests.feedback.conftest import client_config, sqlite_db

FAST = UploadPolicy(max_attempts=3, backoff=(0.0, 0.0), timeout=5.0)
SERVER_IP, SERVER_ID = "192.0.2.10", "host-1"
USER_IP = "198.51.100.77"


def psiphon_document(message: str, **diagnostics) -> bytes:
    """What a foreign (Psiphon) client might send: nothing redacted."""
    return json.dumps({"Metadata": {"platform": "android", "version": 4, "id": "feedface00000001"},
                       "DiagnosticInfo": {"SystemInformation": {"build": "2024"}, **diagnostics},
                       "Feedback": {"email": "u@example.org", "Message": {"text": message}}}).encode()


def write(directory, name: str, data: bytes) -> None:
    path = os.path.join(directory, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


async def test_round_trip_client_put_then_collect_from_the_server_directory(tmp_path, feedback_keys,
                                                                           upload_server, feedback_store):
    private, public = feedback_keys
    config = client_config(tmp_path, public, [upload_server.url("/feedback")])
    notices = [{"noticeType": "Info", "timestamp": "t",
                "data": {"message": "server connection failed", "diagnosticID": "d1", "protocol": "OSSH",
                         "error": f"cannot connect to {SERVER_IP}:443 from {USER_IP}"}}]
    sent = await send_feedback(config, f"{SERVER_IP} is slow", email="me@example.org", notices=notices,
                               keep_ips=[SERVER_IP], policy=FAST)
    assert sent.uploaded
    report = collect(DirectorySource(upload_server.upload_dir), feedback_store, private,
                     server_ids={SERVER_IP: SERVER_ID})
    assert report.stored == (f"feedback/{sent.upload_id}",) and not report.rejected
    (record,) = feedback_store.list()
    assert record.message == f"[server:{SERVER_ID}] is slow"
    assert record.email == "me@example.org" and record.feedback_id == sent.upload_id
    assert record.server_ids == (SERVER_ID,) and record.client_version == "41"
    failure = json.loads(record.document)["DiagnosticInfo"]["EstablishmentFailures"][0]["error"]
    assert failure == f"cannot connect to [server:{SERVER_ID}]:443 from [ip]"
    assert os.listdir(os.path.join(upload_server.upload_dir, "feedback")) == []  # deleted once stored


def test_a_foreign_client_is_redacted_by_the_operator(tmp_path, feedback_keys, feedback_store):
    private, public = feedback_keys
    uploads = tmp_path / "uploads"
    doc = psiphon_document(f"from {USER_IP} to {SERVER_IP} and 2001:db8::1",
                           DiagnosticHistory=[{"msg": "SshPassword", "data": {"SshPassword": "s3cr3t",
                                                                                "sessionId": "ab" * 16}}])
    write(uploads, "f/0000000000000001", encrypt(doc, public, os.urandom))
    report = collect(DirectorySource(str(uploads)), feedback_store, private, server_ids={SERVER_IP: SERVER_ID})
    assert len(report.stored) == 1
    (record,) = feedback_store.list()
    assert record.message == f"from [ip] to [server:{SERVER_ID}] and [ip]"
    assert record.platform == "android" and record.format_version == "4" and record.client_version == "2024"
    for leaked in (USER_IP, SERVER_IP, "2001:db8::1", "s3cr3t", "ab" * 16):
        assert leaked not in record.document
    assert json.loads(record.document)["DiagnosticInfo"]["DiagnosticHistory"][0]["data"]["SshPassword"] == "[secret]"


def test_no_address_reaches_the_database_file(tmp_path, feedback_keys):
    from onehop.feedback.sqlstore import SqlFeedbackStore
    private, public = feedback_keys
    uploads = tmp_path / "uploads"
    write(uploads, "a", encrypt(psiphon_document(f"me: {USER_IP}, server {SERVER_IP}"), public, os.urandom))
    store = SqlFeedbackStore.open(sqlite_db(tmp_path, "fb.db"))
    collect(DirectorySource(str(uploads)), store, private, server_ids={SERVER_IP: SERVER_ID})
    store.engine.dispose()
    raw = b"".join(open(p, "rb").read() for p in tmp_path.glob("fb.db*"))
    assert USER_IP.encode() not in raw and SERVER_IP.encode() not in raw and SERVER_ID.encode() in raw
    assert oct(os.stat(tmp_path / "fb.db").st_mode & 0o777) == "0o600"


def test_bad_uploads_are_rejected_and_every_good_one_is_stored(tmp_path, feedback_keys, vector_key,
                                                               feedback_store):
    private, public = feedback_keys
    uploads = tmp_path / "uploads"
    good = [encrypt(psiphon_document(f"good {i}"), public, os.urandom) for i in range(3)]
    fields = json.loads(good[0])
    ciphertext = fields["contentCiphertext"]
    fields["contentCiphertext"] = ("B" if ciphertext[0] != "B" else "C") + ciphertext[1:]
    write(uploads, "good/1", good[0])
    write(uploads, "good/2", good[1])
    write(uploads, "good/3", good[2])
    write(uploads, "bad/tampered", json.dumps(fields).encode())
    write(uploads, "bad/foreign", encrypt(b"for someone else", vector_key[1], os.urandom))
    write(uploads, "bad/garbage", b"\x00not a blob")
    write(uploads, "bad/oversized", b"{" + b" " * 5000 + b"}")
    report = collect(DirectorySource(str(uploads)), feedback_store, private, max_size=4096)
    assert sorted(report.stored) == ["good/1", "good/2", "good/3"]
    reasons = {r.key: r.reason for r in report.rejected}
    assert reasons == {"bad/tampered": "bad_mac", "bad/foreign": "foreign_key", "bad/garbage": "invalid_blob",
                       "bad/oversized": "too_large"}
    assert all(r.message for r in report.rejected)
    assert sorted(r.message for r in feedback_store.list()) == ["good 0", "good 1", "good 2"]
    assert sorted(os.listdir(uploads / "bad")) == ["foreign", "garbage", "oversized", "tampered"]  # kept
    again = collect(DirectorySource(str(uploads)), feedback_store, private, max_size=4096)
    assert again.stored == () and len(again.rejected) == 4 and len(feedback_store.list()) == 3


class CrashingDelete:
    """A source whose first delete fails, as if the collector died right after storing."""

    def __init__(self, inner) -> None:
        self.inner, self.description, self.failed = inner, inner.description, False

    def uploads(self):
        return self.inner.uploads()

    def read(self, upload, max_size):
        return self.inner.read(upload, max_size)

    def delete(self, upload):
        if not self.failed:
            self.failed = True
            raise SourceError("killed before deleting")
        self.inner.delete(upload)


def test_a_crash_between_store_and_delete_never_duplicates(tmp_path, feedback_keys, feedback_store):
    private, public = feedback_keys
    uploads = tmp_path / "uploads"
    write(uploads, "x", encrypt(psiphon_document("once"), public, os.urandom))
    first = collect(CrashingDelete(DirectorySource(str(uploads))), feedback_store, private)
    assert first.errors and os.path.exists(uploads / "x")
    second = collect(DirectorySource(str(uploads)), feedback_store, private)
    assert second.duplicates == ("x",) and second.stored == ()
    assert not os.path.exists(uploads / "x")
    assert [r.message for r in feedback_store.list()] == ["once"]


def test_the_add_of_a_stored_upload_is_a_no_op(tmp_path, feedback_keys, feedback_store):
    from datetime import datetime

    from onehop.core.redact import Redactor
    from onehop.feedback.collect import build_record
    from onehop.feedback.sources import Upload
    record = build_record(Upload("k", 1), b"b", b'{"Feedback": {"Message": {"text": "t"}}}', Redactor(),
                          datetime.now(UTC))
    assert feedback_store.add(record) is True
    assert feedback_store.add(record) is False
    assert feedback_store.exists("k") and not feedback_store.exists("other")


def test_every_go_vector_blob_is_collected(tmp_path, vector_key, feedback_store):
    private, _ = vector_key
    uploads = tmp_path / "uploads"
    for case in load_vectors("feedback")["cases"]:
        write(uploads, case["name"], case["blob_json"].encode())
    report = collect(DirectorySource(str(uploads)), feedback_store, private)
    assert sorted(report.stored) == ["blob_1", "blob_2", "blob_3"]
    by_key = {r.upload_id: r for r in feedback_store.list()}
    assert by_key["blob_1"].message == "connection slow" and by_key["blob_1"].platform == "linux"
    assert json.loads(by_key["blob_2"].document) == {"raw": "hello feedback"}


async def test_round_trip_through_s3(tmp_path, feedback_keys, s3_bucket, moto_server, feedback_store):
    private, public = feedback_keys
    client, bucket = s3_bucket
    config = client_config(tmp_path, public, [f"{moto_server}/{bucket}/uploads"])
    sent = [await send_feedback(config, f"via s3 {i}", notices=[], policy=FAST) for i in range(2)]
    assert all(s.uploaded for s in sent)
    client.put_object(Bucket=bucket, Key="uploads/tampered", Body=b'{"iv": "AAAA"}')
    client.put_object(Bucket=bucket, Key="elsewhere/ignored", Body=b"not under the prefix")
    source = open_source(f"s3://{bucket}/uploads", s3_endpoint=moto_server)
    assert isinstance(source, S3Source)
    report = collect(source, feedback_store, private)
    assert sorted(report.stored) == sorted(s.upload_id for s in sent)
    assert [r.key for r in report.rejected] == ["tampered"]
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert keys == ["elsewhere/ignored", "uploads/tampered"]
    assert sorted(r.message for r in feedback_store.list()) == ["via s3 0", "via s3 1"]


def test_an_unreachable_s3_endpoint_is_a_clear_error(feedback_keys, tmp_path):
    import boto3
    from botocore.config import Config

    from onehop.feedback.sqlstore import SqlFeedbackStore
    client = boto3.client("s3", endpoint_url="http://127.0.0.1:9", config=Config(retries={"max_attempts": 1}))
    source = S3Source("nothing-here", "p", client=client)
    with pytest.raises(SourceError, match="s3://nothing-here/p/"):
        collect(source, SqlFeedbackStore.open(sqlite_db(tmp_path, "db")), feedback_keys[0])
