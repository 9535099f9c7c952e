"""Builds, keys and a controller stand-in for the upgrade tests."""

from __future__ import annotations

import io
import os
import random
import zipfile
from types import SimpleNamespace

import pytest

from onehop.client.config import ClientConfig
from onehop.client.notices import Notices
from onehop.client.transfer_urls import encode_transfer_url
from onehop.core.authpackage import generate_rsa_keypair
from onehop.net.dial import socket_opener
from tests.e2e.fakes import FileServer


def make_build(version: str, size: int = 1_500_000, seed: int = 0) -> bytes:
    """A runnable zipapp of about ``size`` bytes whose bulk is shared between versions."""
    rng = random.Random(seed)
    bulk = rng.randbytes(size)
    buffer = io.BytesIO()
    buffer.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr("__main__.py", f"print('onehop client {version}')\n")
        archive.writestr("onehop_embedded/bulk.bin", bulk)
        archive.writestr("onehop_embedded/version.txt", version)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def upgrade_keys() -> tuple[str, str]:
    return generate_rsa_keypair(2048)


@pytest.fixture(scope="session")
def builds() -> dict[str, bytes]:
    return {"41": make_build("41"), "42": make_build("42")}


@pytest.fixture
async def mirror():
    """A file server for upgrade packages (``mirror.files[path] = bytes``)."""
    server = FileServer()
    await server.start()
    yield server
    await server.close()


def installed_client(tmp_path, build: bytes) -> str:
    path = tmp_path / "bin" / "onehop-client.pyz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build)
    os.chmod(path, 0o750)
    return str(path)


class FakeController:
    """What the upgrade client needs of the controller: config, notices, outbound_opener()."""

    def __init__(self, config: ClientConfig, opener=None) -> None:
        self.config = config
        self.notices = Notices(None)
        self._opener = opener or socket_opener(config.upstream_proxy)

    def outbound_opener(self):
        return self._opener

    def of_type(self, notice_type: str) -> list[dict]:
        return [n for n in self.notices.recent if n["noticeType"] == notice_type]

    def messages(self) -> list[str]:
        return [n["data"].get("message", "") for n in self.notices.recent]


def upgrade_config(tmp_path, public_key: str, urls, **overrides) -> ClientConfig:
    items = tuple(u if isinstance(u, dict) else encode_transfer_url(u) for u in urls)
    return ClientConfig(data_dir=str(tmp_path / "data"), client_version="41", upgrade_download_urls=items,
                        upgrade_signature_public_key=public_key, **overrides)


def as_namespace(**kw):
    return SimpleNamespace(**kw)
