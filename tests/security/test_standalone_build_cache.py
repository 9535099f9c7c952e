"""The standalone build cache: a tampered cached runtime, or a cached build whose embedded
server list was swapped (its recorded SHA-256 updated to match), is never handed out.

Before the fix: ``runtime-<key>.bin`` had no recorded hash and was embedded into every new
build as found (``publish`` only checks the archive's entries and the embedded files, so a
patched bootloader was signed and published); and ``Builder.build`` checked the embedded
files only when it made a build, not on a cache hit, so ``build-client`` wrote out a cached
build carrying another server list. PyInstaller is not needed: the runtime is a stand-in
(a "bootloader" and an empty PyInstaller archive).
"""

from __future__ import annotations

import hashlib

import pytest

from onehop.network import builds, standalone
from onehop.network.builds import Builder, BuildSpec
from onehop.network.errors import BuildError

BOOTLOADER = b"#!fake-bootloader\n" + bytes(range(256)) * 4


class _Keys:
    def public_keys(self):
        return {name: "" for name in ("RemoteServerListSignaturePublicKey", "ServerEntrySignaturePublicKey",
                                      "FeedbackEncryptionPublicKey", "UpgradeSignaturePublicKey")}


@pytest.fixture
def fake_pyinstaller(monkeypatch):
    frozen = []

    def freeze(stage, excluded, workdir, out, name):
        frozen.append(out)
        out.write_bytes(BOOTLOADER + standalone.COOKIE.pack(standalone.COOKIE_MAGIC, standalone.COOKIE.size, 0, 0,
                                                            311, b"libpython3.11.so"))

    monkeypatch.setattr(builds, "stage_runtime", lambda base, wheels: (base / "onehop").mkdir())
    monkeypatch.setattr(builds, "runtime_closure", dict)
    monkeypatch.setattr(standalone, "excluded_modules", lambda closure: [])
    monkeypatch.setattr(standalone, "pyinstaller_version", lambda: "0-test")
    monkeypatch.setattr(standalone, "check_platform", lambda *a: "linux-x86_64")
    monkeypatch.setattr(standalone, "freeze_runtime", freeze)
    return frozen


def _runtime(cache):
    (runtime,) = cache.glob("runtime-*.bin")
    return runtime


def test_a_tampered_cached_runtime_is_not_built_into_new_builds(tmp_path, fake_pyinstaller):
    cache = tmp_path / "cache"
    with Builder(cache) as builder:
        builder.build(BuildSpec("CH1", "SP", "1", ("aa",)), _Keys(), tmp_path / "one", "standalone")
    runtime = _runtime(cache)
    data = bytearray(runtime.read_bytes())
    data[40] ^= 0xFF  # one byte of the bootloader, outside the archive that verify_standalone reads
    runtime.write_bytes(bytes(data))

    with Builder(cache) as builder:
        try:
            result = builder.build(BuildSpec("CH2", "SP", "1", ("bb",)), _Keys(), tmp_path / "two", "standalone")
        except BuildError as exc:
            assert "tampered" in str(exc)
            return
    # refreezing is the other acceptable answer: never the tampered bootloader
    assert (tmp_path / "two").read_bytes()[40] == BOOTLOADER[40], "the tampered runtime was built in"
    assert len(fake_pyinstaller) == 2 and result.path.exists()


def test_a_cached_build_with_a_swapped_server_list_is_refused_on_a_cache_hit(tmp_path, fake_pyinstaller):
    cache = tmp_path / "cache"
    spec = BuildSpec("CH1", "SP", "1", ("aa",))
    with Builder(cache) as builder:
        first = builder.build(spec, _Keys(), tmp_path / "one", "standalone")
    (cached,) = [p for p in cache.glob("*.bin") if not p.name.startswith("runtime-")]
    files = builds.embedded_files(spec, _Keys())
    standalone.embed(_runtime(cache), {**files, "server_list.dat": b"hostile\n"}, cached)
    cached.with_suffix(".sha256").write_text(hashlib.sha256(cached.read_bytes()).hexdigest())

    with Builder(cache) as builder, pytest.raises(BuildError, match="server_list.dat"):
        builder.build(spec, _Keys(), tmp_path / "two", "standalone")
    assert not (tmp_path / "two").exists()
    assert first.path.read_bytes() != cached.read_bytes()
