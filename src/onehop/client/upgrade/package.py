"""Upgrade package formats: Psiphon's full package and onehop's signed bsdiff4 delta.

Full (``<build>.upgrade``): Psiphon's envelope, a gzip-compressed authenticated package
(``onehop.core.authpackage``) signed (RSA PKCS#1 v1.5 SHA-256) with the upgrade key.
Psiphon's ``data`` is only the base64 of the build, which binds nothing: a mirror could
answer "version 42" with an older, correctly signed build. onehop's ``data`` therefore
starts with a small signed header naming the version and platform class::

    onehop-upgrade/1
    version: 42
    platform: Other

    <base64 build>

(Psiphon's client never reads upgrade packages, its apps do; onehop packages are read
by onehop clients only.) Packages without the header are refused: an unbound package
is exactly what a downgrade replays.

Delta (``<build>.<from>-<to>.delta.upgrade``, beyond Psiphon): the same envelope, gzip
and key; ``data`` is a small header then the base64 of a bsdiff4 patch::

    onehop-delta/2
    platform: Other
    from-version: 41
    to-version: 42
    from-sha256: <hex of the build the patch applies to>
    to-sha256: <hex of the build it produces>
    to-size: <bytes of that build>
    full-package-size: <bytes of the full package, to report the saving>

    <base64 patch>

The headers are signed with the payload, so a client checks the version it was offered,
its platform, the base it patches and the result it gets against signed values
(:func:`check_offer`). Reading verifies the key digest and signature before decoding
anything; all functions are pure (bytes in, bytes out).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

import bsdiff4
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from ...core.api import PLATFORM_OTHER
from ...core.authpackage import compress_gzip, make_package, read_package
from ...errors import LocalProtocolError, PackageReason, RemoteProtocolError, UsageReason
from .errors import DeltaError, UpgradeError

UPGRADE_SUFFIX = ".upgrade"
DELTA_SUFFIX = ".delta.upgrade"
FULL_MAGIC = "onehop-upgrade/1"
DELTA_MAGIC = "onehop-delta/2"
MAX_PACKAGE_SIZE = 768 * 1024 * 1024  # decompressed package JSON (base64 of the build)
_VERSION = re.compile(r"[0-9A-Za-z._-]{1,40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PLATFORM = re.compile(r"[A-Za-z]{1,20}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RemoteProtocolError(PackageReason.INVALID_PACKAGE, f"{what} is not standard base64") from None


# ----------------------------------------------------------------------- full

@dataclass(frozen=True)
class SignedBuild:
    """The authenticated content of a full package: the build and what it was signed as."""

    version: str
    platform: str
    build: bytes


def make_upgrade_package(build: bytes, private_key: str | bytes | RSAPrivateKey, public_key_b64: str, *,
                         version: str | int,
                         platform: str = PLATFORM_OTHER) -> bytes:
    """The upgrade package of ``build`` (gzip-compressed, signed, bound to version and platform)."""
    header = "\n".join([FULL_MAGIC, f"version: {_check_version(version)}", f"platform: {_check_platform(platform)}"])
    data = header + "\n\n" + base64.b64encode(build).decode("ascii")
    return compress_gzip(make_package(data, private_key, public_key_b64))


def read_upgrade_package(blob: bytes, public_key_b64: str, max_size: int = MAX_PACKAGE_SIZE) -> SignedBuild:
    """The build inside an authentic upgrade package and its signed version and platform
    (SignatureError / RemoteProtocolError); :func:`check_offer` says whether to install it."""
    data = read_package(blob, public_key_b64, compression="gzip", max_size=max_size)
    head, sep, body = data.partition("\n\n")
    fields = _header_fields(head, FULL_MAGIC, "upgrade") if sep else None
    if fields is None or not {"version", "platform"} <= fields.keys():
        raise RemoteProtocolError(PackageReason.INVALID_PACKAGE, "upgrade package names no signed version and platform")
    return SignedBuild(fields["version"], fields["platform"], _b64decode(body, "upgrade package data"))


def check_offer(signed_version: str, signed_platform: str, *, offered: str, platform: str, running: str) -> None:
    """UpgradeError unless a package signed as (``signed_version``, ``signed_platform``) is
    the ``offered`` version, for this ``platform``, and newer than the ``running`` one."""
    if signed_platform != platform:
        raise UpgradeError(f"the package is signed for platform {signed_platform}, this client is {platform}")
    if signed_version != str(offered):
        raise UpgradeError(f"the package is signed as version {signed_version}, not the offered {offered}")
    if not is_newer(signed_version, running):
        raise UpgradeError(f"the package is version {signed_version}, not newer than this client ({running})")


def is_newer(offered: str, current: str) -> bool:
    """Psiphon compares client versions as integers; other strings only by inequality."""
    if str(offered).isdigit() and str(current).isdigit():
        return int(offered) > int(current)
    return str(offered) != str(current)


def _header_fields(text: str, magic: str, what: str) -> dict[str, str]:
    lines = text.split("\n")
    if lines[0] != magic:
        raise RemoteProtocolError(PackageReason.INVALID_PACKAGE, f"not an onehop {what} package ({magic})")
    return dict(line.split(": ", 1) for line in lines[1:] if ": " in line)


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
        raise LocalProtocolError(UsageReason.BAD_ARGUMENT, f"unusable version {text!r}")
    return text


def _check_platform(platform: str) -> str:
    if not _PLATFORM.fullmatch(platform):
        raise LocalProtocolError(UsageReason.BAD_ARGUMENT, f"unusable platform {platform!r}")
    return platform


# ----------------------------------------------------------------------- delta

@dataclass(frozen=True)
class DeltaHeader:
    from_version: str
    to_version: str
    from_sha256: str
    to_sha256: str
    to_size: int
    full_package_size: int = 0
    platform: str = PLATFORM_OTHER

    def encode(self) -> str:
        return "\n".join([DELTA_MAGIC, f"platform: {self.platform}",
                           f"from-version: {self.from_version}", f"to-version: {self.to_version}",
                          f"from-sha256: {self.from_sha256}", f"to-sha256: {self.to_sha256}",
                          f"to-size: {self.to_size}", f"full-package-size: {self.full_package_size}"])


@dataclass(frozen=True)
class Delta:
    header: DeltaHeader
    patch: bytes


def make_delta_package(old: bytes, new: bytes, from_version: str, to_version: str,
                       private_key: str | bytes | RSAPrivateKey, public_key_b64: str, *, full_package_size: int = 0,
                       platform: str = PLATFORM_OTHER) -> bytes:
    """A signed delta turning build ``old`` (``from_version``) into ``new``, for ``platform``."""
    header = DeltaHeader(_check_version(from_version), _check_version(to_version), sha256_hex(old),
                         sha256_hex(new), len(new), full_package_size, _check_platform(platform))
    patch = bsdiff4.diff(old, new)
    data = header.encode() + "\n\n" + base64.b64encode(patch).decode("ascii")
    return compress_gzip(make_package(data, private_key, public_key_b64))


def _parse_header(text: str) -> DeltaHeader:
    fields = _header_fields(text, DELTA_MAGIC, "delta")
    try:
        header = DeltaHeader(fields["from-version"], fields["to-version"], fields["from-sha256"],
                             fields["to-sha256"], int(fields["to-size"]), int(fields.get("full-package-size", "0")),
                             fields["platform"])
    except (KeyError, ValueError):
        raise RemoteProtocolError(PackageReason.INVALID_PACKAGE, "delta header is incomplete") from None
    if not (_HEX64.fullmatch(header.from_sha256) and _HEX64.fullmatch(header.to_sha256)):
        raise RemoteProtocolError(PackageReason.INVALID_PACKAGE, "delta header digests are not SHA-256 hex")
    return header


def read_delta_package(blob: bytes, public_key_b64: str, max_size: int = MAX_PACKAGE_SIZE) -> Delta:
    """The header and patch of an authentic delta package (verified before parsing)."""
    data = read_package(blob, public_key_b64, compression="gzip", max_size=max_size)
    head, sep, body = data.partition("\n\n")
    if not sep:
        raise RemoteProtocolError(PackageReason.INVALID_PACKAGE, "delta package has no patch")
    return Delta(_parse_header(head), _b64decode(body, "delta patch"))


def apply_delta(old: bytes, delta: Delta, *, from_version: str | None = None,
                to_version: str | None = None, platform: str | None = None) -> bytes:
    """The new build; DeltaError unless the platform, the versions, the base, the patch and
    the result all check out."""
    header = delta.header
    if platform is not None and header.platform != platform:
        raise DeltaError(f"delta is for platform {header.platform}, this client is {platform}")
    if from_version is not None and to_version is not None and not is_newer(header.to_version, header.from_version):
        raise DeltaError(f"delta from {header.from_version} to {header.to_version} is not an upgrade")
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
