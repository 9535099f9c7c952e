"""Where uploads wait for the operator: a directory (what an upload server wrote) or an
S3 prefix (what clients PUT to a bucket).

An upload is named by its key relative to the directory or prefix (``<upload path>/
<upload id>`` for Psiphon clients); that key is what the store keeps unique. Reading is
bounded: an object larger than ``max_size`` is never read into memory. boto3 is
imported only for S3. Library and OS exceptions become
:class:`~onehop.feedback.errors.SourceError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from ..errors import ConfigError, ConfigProblem
from .errors import SourceError


@dataclass(frozen=True)
class Upload:
    key: str
    size: int
    modified: datetime | None = None


class UploadSource(Protocol):
    description: str

    def uploads(self) -> Iterator[Upload]: ...

    def read(self, upload: Upload, max_size: int) -> bytes: ...

    def delete(self, upload: Upload) -> None: ...


class DirectorySource:
    """Every regular file below ``root`` (hidden files and directories are skipped)."""

    def __init__(self, root: str) -> None:
        if not os.path.isdir(root):
            raise ConfigError([ConfigProblem("--from", f"{root} is not a directory")])
        self.root = root
        self.description = root

    def uploads(self) -> Iterator[Upload]:
        for directory, dirs, files in os.walk(self.root, onerror=self._walk_error):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = os.path.join(directory, name)
                try:
                    stat = os.stat(path, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if os.path.isfile(path) and not os.path.islink(path):
                    key = os.path.relpath(path, self.root).replace(os.sep, "/")
                    yield Upload(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))

    @staticmethod
    def _walk_error(exc: OSError) -> None:
        raise SourceError(f"cannot list {exc.filename}: {exc.strerror}")

    def _path(self, upload: Upload) -> str:
        return os.path.join(self.root, *upload.key.split("/"))

    def read(self, upload: Upload, max_size: int) -> bytes:
        try:
            with open(self._path(upload), "rb") as f:
                return f.read(max_size + 1)
        except OSError as exc:
            raise SourceError(f"cannot read {upload.key}: {exc.strerror}") from None

    def delete(self, upload: Upload) -> None:
        try:
            os.remove(self._path(upload))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SourceError(f"cannot delete {upload.key}: {exc.strerror}") from None


class S3Source:
    """Objects below ``s3://bucket/prefix`` (boto3's credential chain; ``endpoint`` for
    S3-compatible stores)."""

    def __init__(self, bucket: str, prefix: str, *, endpoint: str | None = None, client=None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""  # a "directory"
        self.description = f"s3://{bucket}/{self.prefix}"
        if client is None:
            import boto3
            client = boto3.client("s3", endpoint_url=endpoint)
        self.client = client

    def _call(self, what: str, method, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            return method(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise SourceError(f"S3 {what} in {self.description}: {exc}") from None

    def uploads(self) -> Iterator[Upload]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call("listing", lambda **kw: list(paginator.paginate(**kw)),
                           Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", ()):
                key = item["Key"][len(self.prefix):]
                if key and not key.endswith("/"):
                    yield Upload(key, int(item.get("Size", 0)), item.get("LastModified"))

    def _key(self, upload: Upload) -> str:
        return self.prefix + upload.key

    def read(self, upload: Upload, max_size: int) -> bytes:
        response = self._call("read", self.client.get_object, Bucket=self.bucket, Key=self._key(upload))
        try:
            return self._call("read", lambda: response["Body"].read(max_size + 1))  # bounded
        finally:
            response["Body"].close()

    def delete(self, upload: Upload) -> None:
        self._call("delete", self.client.delete_object, Bucket=self.bucket, Key=self._key(upload))


def open_source(spec: str, *, s3_endpoint: str | None = None) -> UploadSource:
    """``s3://bucket/prefix`` or a directory."""
    if spec.startswith("s3://"):
        bucket, _, prefix = spec[len("s3://"):].partition("/")
        if not bucket:
            raise ConfigError([ConfigProblem("--from", "s3:// needs a bucket name")])
        return S3Source(bucket, prefix, endpoint=s3_endpoint)
    return DirectorySource(spec)
