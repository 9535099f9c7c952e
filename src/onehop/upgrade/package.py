"""Upgrade package formats: Psiphon's full package and onehop's signed bsdiff4 delta.

Full (``<build>.upgrade``, as Psiphon's operators publish it): a gzip-compressed
authenticated package (``onehop.core.authpackage``) whose ``data`` is the standard
base64 of the build, signed (RSA PKCS#1 v1.5 SHA-256) with the upgrade key.

Delta (``<build>.<from>-<to>.delta.upgrade``, beyond Psiphon): the same envelope, gzip
and key; ``data`` is a small header then the base64 of a bsdiff4 patch::

    onehop-delta/1
    from-version: 41
    to-version: 42
    from-sha256: <hex of the build the patch applies to>
    to-sha256: <hex of the build it produces>
    to-size: <bytes of that build>
    full-package-size: <bytes of the full package, to report the saving>

    <base64 patch>

The header is signed with the patch, so a client checks the base it patches and the
result it gets against signed values. Reading verifies the key digest and signature
before decoding anything; all functions are pure (bytes in, bytes out).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

import bsdiff4

from ..core.authpackage import compress_gzip, make_package, read_package
from ..errors import LocalProtocolError, RemoteProtocolError
from .errors import DeltaError

UPGRADE_SUFFIX = ".upgrade"
DELTA_SUFFIX = ".delta.upgrade"
DELTA_MAGIC = "onehop-delta/1"
MAX_PACKAGE_SIZE = 768 * 1024 * 1024  # decompressed package JSON (base64 of the build)
_VERSION = re.compile(r"[0-9A-Za-z._-]{1,40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RemoteProtocolError("invalid_package", f"{what} is not standard base64") from None


# ----------------------------------------------------------------------- full

def make_upgrade_package(build: bytes, private_key: str | bytes, public_key_b64: str) -> bytes:
    """Psiphon's upgrade package of ``build`` (gzip-compressed, signed)."""
    data = base64.b64encode(build).decode("ascii")
    return compress_gzip(make_package(data, private_key, public_key_b64))


def read_upgrade_package(blob: bytes, public_key_b64: str, max_size: int = MAX_PACKAGE_SIZE) -> bytes:
    """The build inside an authentic upgrade package (SignatureError / RemoteProtocolError)."""
    data = read_package(blob, public_key_b64, compression="gzip", max_size=max_size)
    return _b64decode(data, "upgrade package data")


# ----------------------------------------------------------------------- names

def full_name(build_name: str) -> str:
    return build_name + UPGRADE_SUFFIX


def delta_name(build_name: str, from_version: str, to_version: str) -> str:
    """``<build>.<from>-<to>.delta.upgrade``; ``build_name`` may end in ``.upgrade``."""
    build_name = build_name.removesuffix(UPGRADE_SUFFIX)
    return f"{build_name}.{_check_version(from_version)}-{_check_version(to_version)}{DELTA_SUFFIX}"


def _check_version(version: object) -> str:
    text = str(version)
    if not _VERSION.fullmatch(text):
        raise LocalProtocolError("bad_argument", f"unusable version {text!r}")
    return text


# ----------------------------------------------------------------------- delta

@dataclass(frozen=True)
class DeltaHeader:
    from_version: str
    to_version: str
    from_sha256: str
    to_sha256: str
    to_size: int
    full_package_size: int = 0

    def encode(self) -> str:
        return "\n".join([DELTA_MAGIC, f"from-version: {self.from_version}", f"to-version: {self.to_version}",
                          f"from-sha256: {self.from_sha256}", f"to-sha256: {self.to_sha256}",
                          f"to-size: {self.to_size}", f"full-package-size: {self.full_package_size}"])


@dataclass(frozen=True)
class Delta:
    header: DeltaHeader
    patch: bytes


def make_delta_package(old: bytes, new: bytes, from_version: str, to_version: str,
                       private_key: str | bytes, public_key_b64: str, *, full_package_size: int = 0) -> bytes:
    """A signed delta turning build ``old`` (``from_version``) into ``new``."""
    header = DeltaHeader(_check_version(from_version), _check_version(to_version), sha256_hex(old),
                         sha256_hex(new), len(new), full_package_size)
    patch = bsdiff4.diff(old, new)
    data = header.encode() + "\n\n" + base64.b64encode(patch).decode("ascii")
    return compress_gzip(make_package(data, private_key, public_key_b64))


def _parse_header(text: str) -> DeltaHeader:
    lines = text.split("\n")
    if not lines or lines[0] != DELTA_MAGIC:
        raise RemoteProtocolError("invalid_package", "not an onehop delta package")
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    try:
        header = DeltaHeader(fields["from-version"], fields["to-version"], fields["from-sha256"],
                             fields["to-sha256"], int(fields["to-size"]), int(fields.get("full-package-size", "0")))
    except (KeyError, ValueError):
        raise RemoteProtocolError("invalid_package", "delta header is incomplete") from None
    if not (_HEX64.fullmatch(header.from_sha256) and _HEX64.fullmatch(header.to_sha256)):
        raise RemoteProtocolError("invalid_package", "delta header digests are not SHA-256 hex")
    return header


def read_delta_package(blob: bytes, public_key_b64: str, max_size: int = MAX_PACKAGE_SIZE) -> Delta:
    """The header and patch of an authentic delta package (verified before parsing)."""
    data = read_package(blob, public_key_b64, compression="gzip", max_size=max_size)
    head, sep, body = data.partition("\n\n")
    if not sep:
        raise RemoteProtocolError("invalid_package", "delta package has no patch")
    return Delta(_parse_header(head), _b64decode(body, "delta patch"))


def apply_delta(old: bytes, delta: Delta, *, from_version: str | None = None,
                to_version: str | None = None) -> bytes:
    """The new build; DeltaError unless the base, the patch and the result all check out."""
    header = delta.header
    if from_version is not None and header.from_version != str(from_version):
        raise DeltaError(f"delta is from version {header.from_version}, this client is {from_version}")
    if to_version is not None and header.to_version != str(to_version):
        raise DeltaError(f"delta is to version {header.to_version}, not {to_version}")
    if sha256_hex(old) != header.from_sha256:
        raise DeltaError("the local build is not the one this delta applies to")
    try:
        new = bsdiff4.patch(old, delta.patch)
    except Exception as exc:  # bsdiff4 raises ValueError / bz2 errors on a bad patch
        raise DeltaError(f"cannot apply the delta patch: {exc}") from None
    if len(new) != header.to_size or sha256_hex(new) != header.to_sha256:
        raise DeltaError("the patched build does not match the signed SHA-256")
    return new
