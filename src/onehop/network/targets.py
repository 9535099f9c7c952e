"""Where ``publish`` puts objects: a local directory or an S3 bucket (boto3).

Both targets replace an object atomically (directory: temp file + rename; S3: one
PUT, which S3 makes visible only once complete) and skip objects whose content is
already there (directory: bytes compared; S3: our ``sha256`` metadata or the MD5
ETag of a single-part upload). S3 URLs are path-style (``https://ENDPOINT/BUCKET/KEY``)
so the host name is the provider's shared endpoint and says nothing about us.
Library errors become :class:`PublishError` with what failed and where.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from ..errors import ConfigError, ConfigProblem
from .errors import PublishError
from .fileio import FileBatch

DEFAULT_S3_ENDPOINT = "https://s3.amazonaws.com"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_KEY_PART = re.compile(r"[A-Za-z0-9._-]+")


class Target(Protocol):
    name: str
    base_url: str

    def check(self) -> None: ...

    def put(self, path: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> bool: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


def join_url(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + quote(path)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str


def parse_s3(text: str) -> S3Location:
    """``s3://bucket[/prefix]`` -> S3Location; ConfigError naming --to otherwise."""
    rest = text[len("s3://"):] if text.startswith("s3://") else None
    if rest is None:
        raise ConfigError([ConfigProblem("--to", "an S3 target looks like s3://bucket/prefix")])
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    problems = []
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        problems.append(ConfigProblem("--to", f"{bucket!r} is not a valid S3 bucket name"))
    if prefix and not all(_KEY_PART.fullmatch(p) and p not in (".", "..") for p in prefix.split("/")):
        problems.append(ConfigProblem("--to", "the prefix may hold letters, digits, '.', '_', '-' and '/'"))
    if problems:
        raise ConfigError(problems)
    return S3Location(bucket, prefix)


class DirTarget:
    """Objects are staged as temp files and renamed into place together by :meth:`finish`
    (builds first, lists last, one sync for all); :meth:`abort` leaves the old files."""

    def __init__(self, root: Path, base_url: str | None = None) -> None:
        self.root = root.resolve()
        self.name = str(self.root)
        self.base_url = base_url or self.root.as_uri()
        self._batch = FileBatch()

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PublishError(f"cannot create {self.root}: {exc.strerror}") from None
        if not os.access(self.root, os.W_OK):
            raise PublishError(f"{self.root} is not writable")

    def put(self, path: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> bool:
        """``metadata`` (S3 user metadata) has no place in a directory: ignored."""
        try:
            return self._batch.write(self.root / path, data, 0o644)
        except OSError as exc:
            self.abort()
            raise PublishError(f"cannot write {self.root / path}: {exc.strerror}") from None

    def finish(self) -> None:
        try:
            self._batch.commit()
        except OSError as exc:
            self.abort()
            raise PublishError(f"cannot publish to {self.root}: {exc.strerror}") from None

    def abort(self) -> None:
        self._batch.abort()


class S3Target:
    def __init__(self, location: S3Location, endpoint: str | None = None, base_url: str | None = None) -> None:
        self.location = location
        self.endpoint = (endpoint or os.environ.get("AWS_ENDPOINT_URL") or DEFAULT_S3_ENDPOINT).rstrip("/")
        self.name = f"s3://{location.bucket}/{location.prefix}".rstrip("/")
        path_base = f"{self.endpoint}/{location.bucket}" + (f"/{location.prefix}" if location.prefix else "")
        self.base_url = base_url or path_base
        self._client = self._make_client()

    def _make_client(self):
        import boto3
        from botocore.config import Config
        config = Config(s3={"addressing_style": "path"}, signature_version="s3v4", connect_timeout=5,
                        read_timeout=120, retries={"max_attempts": 2, "mode": "standard"})
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=region, config=config)

    def key(self, path: str) -> str:
        return f"{self.location.prefix}/{path}" if self.location.prefix else path

    def _fail(self, what: str, exc: Exception) -> PublishError:
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
        if isinstance(exc, EndpointConnectionError):
            return PublishError(f"cannot reach the S3 endpoint {self.endpoint} ({what}); nothing was published")
        if isinstance(exc, NoCredentialsError):
            return PublishError("no AWS credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or a profile)")
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "?")
            return PublishError(f"S3 refused {what} on {self.name}: {code}")
        return PublishError(f"S3 {what} on {self.name} failed: {exc}")

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            self._client.head_bucket(Bucket=self.location.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("checking the bucket", exc) from None

    def unchanged(self, path: str, data: bytes, metadata: dict[str, str] | None = None) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            head = self._client.head_object(Bucket=self.location.bucket, Key=self.key(path))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._fail(f"reading {path}", exc) from None
        except BotoCoreError as exc:
            raise self._fail(f"reading {path}", exc) from None
        stored = head.get("Metadata", {})
        if any(stored.get(k) != v for k, v in (metadata or {}).items()):
            return False
        sha256 = stored.get("sha256")
        if sha256:
            return sha256 == hashlib.sha256(data).hexdigest()
        return head.get("ETag", "").strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest()

    def put(self, path: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError
        if self.unchanged(path, data, metadata):
            return False
        try:
            self._client.put_object(Bucket=self.location.bucket, Key=self.key(path), Body=data,
                                    ContentType=content_type,
                                    Metadata={**(metadata or {}), "sha256": hashlib.sha256(data).hexdigest()})
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(f"writing {path}", exc) from None
        return True

    def finish(self) -> None:
        """Nothing to do: each PUT is already complete and visible."""

    def abort(self) -> None:
        """Nothing to undo: objects already put are complete (builds before lists)."""


def open_target(text: str, *, base_url: str | None = None, s3_endpoint: str | None = None) -> Target:
    if not text:
        raise ConfigError([ConfigProblem("--to", "give a directory or s3://bucket/prefix")])
    if text.startswith("s3://"):
        return S3Target(parse_s3(text), s3_endpoint, base_url)
    if "://" in text:
        raise ConfigError([ConfigProblem("--to", "only directories and s3:// targets are supported")])
    return DirTarget(Path(text).expanduser(), base_url)
