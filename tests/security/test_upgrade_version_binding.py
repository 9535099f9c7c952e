"""An upgrade package is bound to its version and platform: no downgrade by replay.

Before: the signed ``data`` of a full package was only the base64 of the build. A mirror
(or anyone on a plain-http or SkipVerify URL) answered "version 42" with an older,
correctly signed build; the client installed it and recorded 42, so it was never offered
42 again. A build made for another platform passed too.
"""

from __future__ import annotations

import os
import random

import pytest

from onehop.client.upgrade.check import check_and_download_upgrade
from onehop.client.upgrade.fetch import FetchPolicy
from onehop.client.upgrade.install import Installation, load_state
from onehop.core.authpackage import generate_rsa_keypair
from onehop.upgrade.artifacts import upgrade_artifacts
from tests.upgrade.conftest import (
    FakeController,
    installed_client,
    make_build,
    upgrade_config,
)

FAST = FetchPolicy(max_attempts=2, retry_delay=0.0, timeout=10.0, delta_attempts=1)
FULL = "/site/onehop-client.pyz.upgrade"


@pytest.fixture(scope="module")
def upgrade_keys() -> tuple[str, str]:
    return generate_rsa_keypair(2048)


@pytest.fixture(scope="module")
def old_builds() -> dict[str, bytes]:
    return {v: make_build(v, size=200_000) for v in ("40", "41", "42")}


def full_package(build: bytes, version: str, keys, **kw) -> bytes:
    """What the operator signed and published for ``version`` (the legitimate package)."""
    (full,) = upgrade_artifacts("onehop-client.pyz", build, version, *keys, **kw)
    return full.data


async def offer(tmp_path, keys, mirror, build: bytes, offered: str = "42"):
    path = installed_client(tmp_path, build)
    controller = FakeController(upgrade_config(tmp_path, keys[1], [mirror.url(FULL)]))
    result = await check_and_download_upgrade(controller, offered,
                                              installation=Installation("single-file", path, "python3"),
                                              policy=FAST, terminal=False, rng=random.Random(0))
    return result, path, controller


def assert_untouched(path: str, build: bytes, controller) -> None:
    assert open(path, "rb").read() == build
    assert not os.path.exists(path + ".previous")
    assert "installed" not in load_state(controller.config.data_dir)


async def test_an_older_signed_build_served_as_the_offered_version_is_refused(tmp_path, upgrade_keys, old_builds,
                                                                             mirror):
    mirror.files[FULL] = full_package(old_builds["40"], "40", upgrade_keys)  # a replay of last year's release
    result, path, controller = await offer(tmp_path, upgrade_keys, mirror, old_builds["41"], offered="42")
    assert result.status == "failed"
    assert "40" in result.error and "42" in result.error
    assert_untouched(path, old_builds["41"], controller)


async def test_the_running_version_signed_again_is_not_an_upgrade(tmp_path, upgrade_keys, old_builds, mirror):
    mirror.files[FULL] = full_package(old_builds["41"], "41", upgrade_keys)
    result, path, controller = await offer(tmp_path, upgrade_keys, mirror, old_builds["41"], offered="42")
    assert result.status == "failed"
    assert_untouched(path, old_builds["41"], controller)


async def test_a_build_signed_for_another_platform_is_refused(tmp_path, upgrade_keys, old_builds, mirror):
    mirror.files[FULL] = full_package(old_builds["42"], "42", upgrade_keys, platform="Windows")
    result, path, controller = await offer(tmp_path, upgrade_keys, mirror, old_builds["41"], offered="42")
    assert result.status == "failed" and "Windows" in result.error
    assert_untouched(path, old_builds["41"], controller)


async def test_the_offered_version_signed_for_this_platform_installs(tmp_path, upgrade_keys, old_builds, mirror):
    mirror.files[FULL] = full_package(old_builds["42"], "42", upgrade_keys, platform="Other")
    result, path, controller = await offer(tmp_path, upgrade_keys, mirror, old_builds["41"], offered="42")
    assert result.status == "installed"
    assert open(path, "rb").read() == old_builds["42"]
    assert load_state(controller.config.data_dir)["installed"]["version"] == "42"


def test_deltas_are_bound_to_the_platform(upgrade_keys, old_builds):
    from onehop.client.upgrade.errors import DeltaError
    from onehop.client.upgrade.package import apply_delta, read_delta_package

    artifacts = upgrade_artifacts("onehop-client.pyz", old_builds["42"], "42", *upgrade_keys,
                                  previous=[("41", old_builds["41"])], platform="Windows")
    (delta,) = [a for a in artifacts if a.kind == "delta"]
    parsed = read_delta_package(delta.data, upgrade_keys[1])
    assert parsed.header.platform == "Windows"
    with pytest.raises(DeltaError, match="Windows"):
        apply_delta(old_builds["41"], parsed, from_version="41", to_version="42", platform="Other")


def test_packages_made_by_the_network_carry_version_and_platform(upgrade_keys, old_builds):
    from onehop.client.upgrade.package import read_upgrade_package
    from onehop.network.keys import KeyPair
    from onehop.network.upgrades import VersionPlan, make_packages

    plan = VersionPlan("Other", 42, "site", (41, old_builds["41"]))
    artifacts = make_packages("onehop-client.pyz", old_builds["42"], plan, KeyPair(*upgrade_keys))
    full = next(a for a in artifacts if a.kind == "full")
    signed = read_upgrade_package(full.data, upgrade_keys[1])
    assert (signed.version, signed.platform, signed.build) == ("42", "Other", old_builds["42"])
