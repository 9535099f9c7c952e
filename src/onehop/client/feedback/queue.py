"""Feedback packages waiting for upload: ``<data dir>/feedback/pending/<upload id>.json``.

A package is written (atomically: temporary file, fsync, rename) *before* any upload is
tried and removed only after a server answered 200, so feedback survives a crash, a
reboot or days without a way out; a client started later uploads what is left. Each
file holds the encrypted blob (never the plaintext), the upload ID (constant across
retries: a repeated PUT overwrites the same object) and the digest of the key it was
encrypted to.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from ...atomicfile import replace_file
from .errors import FeedbackError

PENDING_DIR = ("feedback", "pending")
_UPLOAD_ID = re.compile(r"[0-9a-f]{16}")
ENVELOPE_VERSION = 1


@dataclass(frozen=True)
class PendingFeedback:
    upload_id: str
    key_digest: str
    blob: bytes
    path: str


def pending_dir(data_dir: str) -> str:
    return os.path.join(data_dir, *PENDING_DIR)


class FeedbackQueue:
    def __init__(self, data_dir: str) -> None:
        self.directory = pending_dir(data_dir)

    def add(self, upload_id: str, key_digest: str, blob: bytes) -> PendingFeedback:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise FeedbackError(f"upload ID must be 16 lower-case hex digits, not {upload_id!r}")
        envelope = {"version": ENVELOPE_VERSION, "uploadId": upload_id, "keyDigest": key_digest,
                    "blob": blob.decode("ascii")}
        path = os.path.join(self.directory, f"{upload_id}.json")
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            replace_file(path, json.dumps(envelope).encode("ascii"), 0o600)
        except OSError as exc:
            raise FeedbackError(f"cannot save the feedback package in {self.directory}: {exc}") from None
        return PendingFeedback(upload_id, key_digest, blob, path)

    def pending(self) -> list[PendingFeedback]:
        """Every readable package, oldest first; unreadable files are left alone."""
        try:
            names = [n for n in os.listdir(self.directory) if n.endswith(".json") and not n.startswith(".")]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise FeedbackError(f"cannot list {self.directory}: {exc}") from None
        found = [p for p in (self._read(os.path.join(self.directory, n)) for n in names) if p is not None]
        return sorted(found, key=lambda p: (_mtime(p.path), p.upload_id))

    def _read(self, path: str) -> PendingFeedback | None:
        try:
            with open(path, encoding="ascii") as f:
                envelope = json.load(f)
            upload_id, digest, blob = envelope["uploadId"], envelope["keyDigest"], envelope["blob"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not (isinstance(blob, str) and isinstance(digest, str) and _UPLOAD_ID.fullmatch(str(upload_id))):
            return None
        return PendingFeedback(upload_id, digest, blob.encode("ascii", "replace"), path)

    def remove(self, item: PendingFeedback) -> None:
        try:
            os.remove(item.path)
        except FileNotFoundError:
            pass  # another process uploaded it too
        except OSError as exc:
            raise FeedbackError(f"cannot remove the uploaded package {item.path}: {exc}") from None


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0
