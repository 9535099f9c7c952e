"""Fixtures for the responder tests (helpers are in helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from onehop.mail.service import Responder

from .helpers import Sink, make_options, write_export


@pytest.fixture
def sink():
    s = Sink()
    s.start()
    yield s
    s.stop()

@pytest.fixture
def down_sink():
    """A relay address with nothing listening yet (``start()`` brings it up)."""
    s = Sink()
    yield s
    s.stop()

@pytest.fixture(scope="session")
def dkim_material(tmp_path_factory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path = tmp_path_factory.mktemp("dkim") / "dkim.pem"
    path.write_bytes(pem)
    from onehop.mail.dkimtools import load_dkim_key, public_key_record
    dkim_key = load_dkim_key(str(path), "mail2024", "example.org")
    return path, dkim_key, public_key_record(dkim_key)

@pytest.fixture
def export(tmp_path) -> Path:
    return write_export(tmp_path / "export")

@pytest.fixture
async def start_responder(tmp_path):
    """``await start_responder(config, relay_port, **RunOptions overrides)``; stopped at teardown."""
    started: list[Responder] = []

    async def start(config: Path, relay_port: int, *, state_dir: Path | None = None, dnsfunc=None,
                    **overrides) -> Responder:
        options = make_options(config, relay_port, state_dir or tmp_path / "state", **overrides)
        responder = Responder(options, dnsfunc=dnsfunc)
        await responder.start()
        started.append(responder)
        return responder

    yield start
    for responder in started:
        if not responder.stopped:
            await responder.stop()
