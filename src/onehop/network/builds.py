"""Per-channel client builds (one runnable file); their signed upgrade packages are made
by ``onehop.client.upgrade.package.make_upgrade_package`` (see ``publish``).

A build is a shiv zipapp (``zipapp``) or a one-file native executable (``standalone``,
PyInstaller; ``standalone`` freezes the runtime once and embeds each channel's files in
it). A zipapp is the staged runtime (``staging``) plus a top-level package
``onehop_embedded`` holding ``config.json`` (Psiphon key names: channel and sponsor
IDs, client version, remote list / upgrade / feedback URLs and keys) and
``server_list.dat`` (the channel's embedded list). ``python FILE client ...`` runs
the client with them. Builds are reproducible (fixed timestamps, sorted entries), so
the same inputs give the same bytes: publishing skips unchanged builds, and a cache
keyed by the inputs avoids rebuilding them. See docs/client-builds.md for the why.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildError
from .fileio import write_atomic
from .keys import NetworkKeys
from .staging import ENTRY_POINT, runtime_closure, stage_runtime, tree_digest
from . import standalone

EMBEDDED_PACKAGE = "onehop_embedded"  # the name onehop.client.config looks for
SHEBANG = "/usr/bin/env python3"
UPGRADE_SUFFIX = ".upgrade"
FORMATS = ("zipapp", "standalone")
CACHE_SUFFIXES = {"zipapp": ".pyz", "standalone": ".bin"}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "onehop" / "builds"


def transfer_urls(urls: tuple[str, ...] | list[str]) -> list[dict]:
    """Psiphon TransferURL objects: the URL base64-encoded, tried from the first attempt."""
    return [{"URL": base64.b64encode(u.encode("utf-8")).decode("ascii"), "OnlyAfterAttempts": 0,
             "SkipVerify": False} for u in urls]


@dataclass(frozen=True)
class BuildSpec:
    """Everything a (channel, sponsor) build embeds, besides the network's public keys."""

    channel_id: str
    sponsor_id: str
    client_version: str
    server_list: tuple[str, ...]
    remote_list_urls: tuple[str, ...] = ()
    upgrade_urls: tuple[str, ...] = ()
    feedback_urls: tuple[str, ...] = ()


def client_config(spec: BuildSpec, keys: NetworkKeys) -> dict:
    public = keys.public_keys()
    return {
        "PropagationChannelId": spec.channel_id,
        "SponsorId": spec.sponsor_id,
        "ClientVersion": spec.client_version,
        "RemoteServerListURLs": transfer_urls(spec.remote_list_urls),
        "RemoteServerListSignaturePublicKey": public["RemoteServerListSignaturePublicKey"],
        "ServerEntrySignaturePublicKey": public["ServerEntrySignaturePublicKey"],
        "FeedbackUploadURLs": transfer_urls(spec.feedback_urls),
        "FeedbackEncryptionPublicKey": public["FeedbackEncryptionPublicKey"],
        "UpgradeDownloadURLs": transfer_urls(spec.upgrade_urls),
        "UpgradeSignaturePublicKey": public["UpgradeSignaturePublicKey"],
    }


def embedded_files(spec: BuildSpec, keys: NetworkKeys) -> dict[str, bytes]:
    config = json.dumps(client_config(spec, keys), indent=2, sort_keys=True) + "\n"
    return {"__init__.py": b'"""Configuration embedded in this client build by onehop network."""\n',
            "config.json": config.encode("utf-8"),
            "server_list.dat": ("\n".join(spec.server_list) + "\n").encode("ascii")}


@dataclass(frozen=True)
class BuildResult:
    path: Path
    sha256: str
    size: int
    cached: bool
    format: str = "zipapp"


def format_of(data: bytes) -> str | None:
    """``standalone`` (a PyInstaller executable), ``zipapp`` (a zip file) or None."""
    try:
        standalone.find_archive(data)
        return "standalone"
    except BuildError:
        pass
    if zipfile.is_zipfile(io.BytesIO(data)):
        return "zipapp"
    return None


def verify_build(data: bytes, build_format: str, files: dict[str, bytes] | None = None) -> None:
    """Refuse a build that is damaged or tampered with, or (with ``files``) that does not
    embed exactly ``files``: what ``publish`` checks before it signs and uploads."""
    if build_format == "standalone":
        standalone.verify_standalone(data, files)
        return
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            bad = archive.testzip()
            found = {n.rsplit("/", 1)[1]: archive.read(n) for n in archive.namelist()
                     if n.startswith(f"site-packages/{EMBEDDED_PACKAGE}/") and not n.endswith("/")}
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise BuildError(f"zipapp build is damaged: {exc}") from None
    if bad is not None:
        raise BuildError(f"zipapp build: {bad} is corrupt (tampered?)")
    if files is not None and found != files:
        raise BuildError("zipapp build: its embedded files differ from what this channel's build must carry")


class Builder:
    """Stages the runtime once, then makes any number of builds (cached by inputs)."""

    def __init__(self, cache_dir: Path | None = None, wheels: str = "installed") -> None:
        self.cache_dir = cache_dir or default_cache_dir()
        self.wheels = wheels  # where the pinned runtime comes from (onehop.network.pins)
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._base: Path | None = None
        self._base_digest = ""
        self._runtime: Path | None = None

    def __enter__(self) -> Builder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _stage(self) -> tuple[Path, str]:
        if self._base is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="onehop-build-")
            self._base = Path(self._tmp.name) / "runtime"
            self._base.mkdir()
            stage_runtime(self._base, self.wheels)
            self._base_digest = tree_digest(self._base)
        return self._base, self._base_digest

    def build(self, spec: BuildSpec, keys: NetworkKeys, out: Path, build_format: str = "zipapp") -> BuildResult:
        """Write the build for ``spec`` to ``out`` atomically; a cached one is checked first."""
        if build_format not in FORMATS:
            raise BuildError(f"unknown build format {build_format!r} (known: {', '.join(FORMATS)})")
        if build_format == "standalone":
            standalone.check_platform()
        base, digest = self._stage()
        files = embedded_files(spec, keys)
        if build_format == "standalone":
            digest = self._standalone_runtime_key(base, digest)
        key = hashlib.sha256(digest.encode() + b"".join(
            name.encode() + b"\0" + hashlib.sha256(data).digest() for name, data in sorted(files.items()))).hexdigest()
        cached = self.cache_dir / f"{key}{CACHE_SUFFIXES[build_format]}"
        index = self.cache_dir / f"{key}.sha256"
        hit = cached.is_file() and index.is_file()
        if not hit:
            if build_format == "standalone":
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                standalone.embed(self._freeze(base), files, cached)
            else:
                self._shiv(base, files, cached)
        data = cached.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        if hit and index.read_text(encoding="ascii").strip() != sha256:
            raise BuildError(f"the cached build {cached} does not match its recorded SHA-256 (tampered with?): "
                             "remove it and build again")
        verify_build(data, build_format, files)  # a cache hit too: its hash file may have been rewritten
        if not hit:
            write_atomic(index, sha256.encode("ascii"))
        try:
            write_atomic(out, data, 0o755)
        except OSError as exc:
            raise BuildError(f"cannot write {out}: {exc.strerror or exc}") from None
        return BuildResult(out, sha256, len(data), hit, build_format)

    def _standalone_runtime_key(self, base: Path, digest: str) -> str:
        if self._runtime is None:
            self._excluded = standalone.excluded_modules(runtime_closure())
            self._runtime_key = standalone.runtime_key(digest, self._excluded)
            self._runtime = self.cache_dir / f"runtime-{self._runtime_key}.bin"
        return self._runtime_key

    def _freeze(self, base: Path) -> Path:
        """The channel-less PyInstaller runtime, frozen once per set of inputs (cached)."""
        assert self._runtime is not None and self._tmp is not None
        index = self._runtime.with_name(self._runtime.name + ".sha256")  # not <key>.sha256: no build's index
        if self._runtime.is_file() and index.is_file():
            if hashlib.sha256(self._runtime.read_bytes()).hexdigest() != index.read_text(encoding="ascii").strip():
                raise BuildError(f"the cached runtime {self._runtime} does not match its recorded SHA-256 "
                                 "(tampered with?): remove it and build again")
            return self._runtime
        # not frozen yet, or frozen without a recorded hash (an older cache): freeze it (again)
        work = Path(tempfile.mkdtemp(dir=self._tmp.name, prefix="freeze-"))
        partial = work / "runtime.partial"
        standalone.freeze_runtime(base, self._excluded, work, partial, "onehop-client")
        data = partial.read_bytes()
        standalone.verify_standalone(data)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self._runtime, data, 0o755)
        write_atomic(index, hashlib.sha256(data).hexdigest().encode("ascii"))
        return self._runtime

    def _shiv(self, base: Path, files: dict[str, bytes], cached: Path) -> None:
        assert self._tmp is not None
        extra = Path(tempfile.mkdtemp(dir=self._tmp.name, prefix="embedded-"))
        package = extra / EMBEDDED_PACKAGE
        package.mkdir()
        for name, data in files.items():
            (package / name).write_bytes(data)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=".shiv-"))  # private, unpredictable
        partial = scratch / cached.name
        command = [sys.executable, "-m", "shiv", "--site-packages", str(base), "--site-packages", str(extra),
                   "-e", ENTRY_POINT, "-p", SHEBANG, "-o", str(partial), "--reproducible", "--compressed"]
        env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
        try:
            try:
                done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise BuildError(f"cannot run shiv: {exc}") from None
            if done.returncode != 0 or not partial.is_file():
                raise BuildError(f"shiv failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
            os.replace(partial, cached)
        finally:
            shutil.rmtree(extra, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)


def find_cached_build(cache_dir: Path, sha256: str) -> Path | None:
    """A cached build with this content hash, if one is still in the cache."""
    if not cache_dir.is_dir():
        return None
    for index in cache_dir.glob("*.sha256"):
        if index.read_text(encoding="ascii").strip() != sha256:
            continue
        for suffix in CACHE_SUFFIXES.values():
            build = index.with_suffix(suffix)
            if build.is_file():
                return build
    return None
