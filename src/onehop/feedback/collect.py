"""The operator's collector: uploads in, decrypted and redacted records out.

For each upload in the source, in order:

1. already stored (same key)? delete the upload and move on — a collector that
   crashed between storing and deleting never stores anything twice;
2. larger than ``max_size``? rejected (``too_large``) without being read;
3. parse the blob, unwrap the MAC key and check the MAC, only then decrypt
   (``onehop.core.feedbackcrypto``); a tampered, foreign or malformed blob is rejected
   with its reason and left in place for a human to look at;
4. redact the document (known server addresses become ``[server:<id>]``, every other
   address and every secret goes) and store it;
5. only once the store has committed: delete the upload.

One bad upload never stops the others; the report lists what was stored, skipped and
rejected, and why.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..client.feedback.document import summarize
from ..core.feedbackcrypto import DEFAULT_MAX_BLOB_SIZE, decrypt, load_private_key
from ..core.redact import Redactor
from ..errors import FeedbackReason, OnehopError, RemoteProtocolError
from .sources import Upload, UploadSource
from .store import FeedbackRecord, FeedbackStore

_SERVER_ID = re.compile(r"\[server:([^\]\s]{1,120})\]")


@dataclass(frozen=True)
class Rejection:
    key: str
    reason: str
    message: str


@dataclass(frozen=True)
class CollectReport:
    stored: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    errors: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"stored": list(self.stored), "duplicates": list(self.duplicates),
                "rejected": [{"key": r.key, "reason": r.reason, "error": r.message} for r in self.rejected],
                "errors": list(self.errors)}


def parse_document(plaintext: bytes) -> Any:
    """The decrypted JSON document, or ``{"raw": text}`` for a non-JSON plaintext."""
    text = plaintext.decode("utf-8", errors="replace")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return {"raw": text}
    return document if isinstance(document, dict) else {"raw": text}


def build_record(upload: Upload, blob: bytes, plaintext: bytes, redactor: Redactor,
                 stored_at: datetime) -> FeedbackRecord:
    """A record of redacted data only (pure)."""
    document = redactor.value(parse_document(plaintext))
    encoded = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    summary = summarize(document)
    return FeedbackRecord(
        upload_id=upload.key, blob_sha256=hashlib.sha256(blob).hexdigest(), document=encoded,
        stored_at=stored_at, feedback_id=summary.feedback_id, platform=summary.platform,
        format_version=summary.format_version, client_version=summary.client_version,
        email=summary.email, message=summary.message,
        server_ids=tuple(sorted(set(_SERVER_ID.findall(encoded)))), received_at=upload.modified)


class Collector:
    def __init__(self, source: UploadSource, store: FeedbackStore, private_key: Any, *,
                 server_ids: Mapping[str, str] | None = None, max_size: int = DEFAULT_MAX_BLOB_SIZE,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.source, self.store = source, store
        self.key = load_private_key(private_key) if isinstance(private_key, (str, bytes)) else private_key
        self.redactor = Redactor(server_ids or {})
        self.max_size = max_size
        self.clock = clock
        self._stored: list[str] = []
        self._duplicates: list[str] = []
        self._rejected: list[Rejection] = []
        self._errors: list[str] = []

    def run(self) -> CollectReport:
        for upload in self.source.uploads():
            try:
                self._one(upload)
            except RemoteProtocolError as exc:
                self._rejected.append(Rejection(upload.key, exc.reason, str(exc)))
            except OnehopError as exc:
                self._errors.append(f"{upload.key}: {exc}")
        return CollectReport(tuple(self._stored), tuple(self._duplicates), tuple(self._rejected),
                             tuple(self._errors))

    def _one(self, upload: Upload) -> None:
        if self.store.exists(upload.key):
            self.source.delete(upload)
            self._duplicates.append(upload.key)
            return
        if upload.size > self.max_size:
            raise RemoteProtocolError(FeedbackReason.TOO_LARGE,
                                      f"upload of {upload.size} bytes exceeds {self.max_size}")
        blob = self.source.read(upload, self.max_size)
        plaintext = decrypt(blob, self.key, self.max_size)
        if not self.store.add(build_record(upload, blob, plaintext, self.redactor, self.clock())):
            self._duplicates.append(upload.key)
        else:
            self._stored.append(upload.key)
        self.source.delete(upload)


def collect(source: UploadSource, store: FeedbackStore, private_key: Any, **options: Any) -> CollectReport:
    """Collect every upload of ``source`` into ``store`` (see the module doc)."""
    return Collector(source, store, private_key, **options).run()
