"""Upgrade package formats: Psiphon's full package and the signed bsdiff4 delta."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from onehop.client.upgrade.errors import DeltaError, UpgradeError
from onehop.client.upgrade.package import (
    Delta,
    SignedBuild,
    apply_delta,
    check_offer,
    delta_name,
    make_delta_package,
    make_upgrade_package,
    read_delta_package,
    read_upgrade_package,
)
from onehop.core.authpackage import compress_gzip, make_package, read_package
from onehop.errors import RemoteProtocolError, SignatureError
from onehop.upgrade.artifacts import upgrade_artifacts
from tests.conftest import load_vectors


def test_full_package_is_psiphons_envelope_with_version_and_platform_signed_in(upgrade_keys, builds):
    private, public = upgrade_keys
    blob = make_upgrade_package(builds["42"], private, public, version="42")
    assert blob[:2] == b"\x1f\x8b"                                   # gzip, as psi_ops writes it
    package = json.loads(gzip.decompress(blob))
    assert set(package) == {"data", "signature", "signingPublicKeyDigest"}
    header, body = package["data"].split("\n\n")
    assert header == "onehop-upgrade/1\nversion: 42\nplatform: Other"
    assert base64.b64decode(body) == builds["42"]
    assert read_upgrade_package(blob, public) == SignedBuild("42", "Other", builds["42"])


def test_an_unbound_psiphon_style_package_is_refused(upgrade_keys, builds):
    private, public = upgrade_keys
    legacy = compress_gzip(make_package(base64.b64encode(builds["41"]).decode(), private, public))
    with pytest.raises(RemoteProtocolError, match="version"):
        read_upgrade_package(legacy, public)


def test_check_offer():
    check_offer("42", "Other", offered="42", platform="Other", running="41")
    for signed, platform, offered, running in [("40", "Other", "42", "41"), ("42", "Windows", "42", "41"),
                                               ("41", "Other", "41", "41"), ("9", "Other", "9", "10")]:
        with pytest.raises(UpgradeError):
            check_offer(signed, platform, offered=offered, platform="Other", running=running)


def test_full_package_with_the_go_vector_key():
    case = load_vectors("auth_package")["cases"][0]
    blob = make_upgrade_package(b"\x00binary\xff" * 100, case["private_key_pem_pkcs1"], case["public_key_b64_der"],
                                version=7)
    assert read_upgrade_package(blob, case["public_key_b64_der"]).build == b"\x00binary\xff" * 100
    data = read_package(blob, case["public_key_b64_der"], compression="gzip")
    assert base64.b64decode(data.split("\n\n")[1]) == b"\x00binary\xff" * 100


def test_a_tampered_or_foreign_package_is_rejected(upgrade_keys, builds):
    private, public = upgrade_keys
    package = json.loads(gzip.decompress(make_upgrade_package(b"good build", private, public, version=2)))
    package["data"] = package["data"].replace("version: 2", "version: 3")
    with pytest.raises(SignatureError):
        read_upgrade_package(gzip.compress(json.dumps(package).encode()), public)
    other = load_vectors("auth_package")["cases"][0]["public_key_b64_der"]
    with pytest.raises(SignatureError, match="digest"):
        read_upgrade_package(make_upgrade_package(b"x", private, public, version=2), other)
    with pytest.raises(RemoteProtocolError):
        read_upgrade_package(b"\x1f\x8b garbage", public)


def test_delta_round_trip(upgrade_keys, builds):
    private, public = upgrade_keys
    blob = make_delta_package(builds["41"], builds["42"], "41", "42", private, public, full_package_size=123)
    delta = read_delta_package(blob, public)
    assert (delta.header.from_version, delta.header.to_version, delta.header.full_package_size) == ("41", "42", 123)
    assert delta.header.platform == "Other"
    assert len(blob) < len(builds["42"]) / 10
    assert apply_delta(builds["41"], delta, from_version="41", to_version="42") == builds["42"]


def test_delta_checks_the_base_and_the_result(upgrade_keys, builds):
    private, public = upgrade_keys
    delta = read_delta_package(make_delta_package(builds["41"], builds["42"], "41", "42", private, public), public)
    with pytest.raises(DeltaError, match="not the one"):
        apply_delta(builds["42"], delta)
    with pytest.raises(DeltaError, match="from version"):
        apply_delta(builds["41"], delta, from_version="40")
    forged = Delta(delta.header.__class__(**{**delta.header.__dict__, "to_sha256": "0" * 64}), delta.patch)
    with pytest.raises(DeltaError, match="SHA-256"):
        apply_delta(builds["41"], forged)
    with pytest.raises(DeltaError, match="patch"):
        apply_delta(builds["41"], Delta(delta.header, b"BSDIFF40 not a patch"))


def test_a_delta_signed_by_another_key_is_rejected(upgrade_keys, builds):
    case = load_vectors("auth_package")["cases"][0]
    blob = make_delta_package(b"a", b"b", "1", "2", case["private_key_pem_pkcs1"], case["public_key_b64_der"])
    with pytest.raises(SignatureError):
        read_delta_package(blob, upgrade_keys[1])


def test_names():
    assert delta_name("onehop-client.pyz", "41", 42) == "onehop-client.pyz.41-42.delta.upgrade"
    assert delta_name("onehop-client.pyz.upgrade", "41", "42") == "onehop-client.pyz.41-42.delta.upgrade"


def test_artifacts_for_the_network_cli(upgrade_keys, builds):
    private, public = upgrade_keys
    unrelated = bytes(range(256)) * 4000  # a delta from this is no smaller than the full package
    artifacts = upgrade_artifacts("onehop-client.pyz", builds["42"], 42, private, public,
                                  previous=[("41", builds["41"]), ("40", unrelated), ("42", builds["42"])])
    assert [(a.name, a.kind) for a in artifacts] == [("onehop-client.pyz.upgrade", "full"),
                                                     ("onehop-client.pyz.41-42.delta.upgrade", "delta")]
    full, delta = artifacts
    assert read_upgrade_package(full.data, public) == SignedBuild("42", "Other", builds["42"])
    assert read_delta_package(delta.data, public).header.full_package_size == full.size
    assert len(full.sha256) == 64 and delta.size < full.size
