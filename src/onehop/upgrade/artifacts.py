"""Operator helper: the upgrade files to publish for one client build.

``onehop network client-version add`` / ``publish`` call :func:`upgrade_artifacts`
with the build, its version, the upgrade key pair and (optionally) earlier builds; they
get back named byte strings to write next to the build on every mirror:

* ``<build>.upgrade``: the full upgrade package (always), Psiphon's envelope with the
  version and platform signed in (``onehop.client.upgrade.package``);
* ``<build>.<from>-<to>.delta.upgrade``: one signed bsdiff4 delta per earlier build,
  kept only when it is smaller than the full package.

bsdiff4 needs memory and time roughly proportional to the build size (tens of seconds
and several hundred MB for a 40 MB build): run it once per publication, not per mirror.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from ..client.upgrade.package import (
    delta_name,
    full_name,
    make_delta_package,
    make_upgrade_package,
    sha256_hex,
)
from ..core.api import PLATFORM_OTHER


@dataclass(frozen=True)
class UpgradeArtifact:
    name: str
    data: bytes
    kind: str                 # "full" or "delta"
    to_version: str
    from_version: str = ""

    @property
    def sha256(self) -> str:
        return sha256_hex(self.data)

    @property
    def size(self) -> int:
        return len(self.data)


def upgrade_artifacts(build_name: str, build: bytes, version: str | int,
                      private_key: str | bytes | RSAPrivateKey,
                      public_key_b64: str, previous: Iterable[tuple[str | int, bytes]] = (), *,
                      platform: str = PLATFORM_OTHER) -> tuple[UpgradeArtifact, ...]:
    """The full package, then the useful deltas from each ``(version, build)`` in ``previous``;
    every one is signed with ``version`` and ``platform`` (the psinet platform class the
    build's clients report: onehop builds are ``Other``)."""
    to_version = str(version)
    full = make_upgrade_package(build, private_key, public_key_b64, version=to_version, platform=platform)
    artifacts = [UpgradeArtifact(full_name(build_name), full, "full", to_version)]
    for from_version, old in previous:
        if str(from_version) == to_version or old == build:
            continue
        delta = make_delta_package(old, build, str(from_version), to_version, private_key, public_key_b64,
                                   full_package_size=len(full), platform=platform)
        if len(delta) < len(full):
            artifacts.append(UpgradeArtifact(delta_name(build_name, str(from_version), to_version), delta,
                                             "delta", to_version, str(from_version)))
    return tuple(artifacts)
