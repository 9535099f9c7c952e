"""The network-wide keys: generation, rotation and the public halves clients embed.

Kinds (and the Psiphon client config key of the public half):

* ``remote_server_list``: RSA, signs remote server lists (RemoteServerListSignaturePublicKey)
* ``server_entry``: Ed25519, signs every server entry (ServerEntrySignaturePublicKey)
* ``feedback``: RSA, clients encrypt feedback to it (FeedbackEncryptionPublicKey)
* ``upgrade``: RSA, signs upgrade packages (UpgradeSignaturePublicKey)
* ``discovery_hmac``: base64 of 32 random bytes, used as its text by discovery

Rotation retires the active key (kept, for old data) and makes a new one; clients
built with the old public key need new builds.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core.authpackage import generate_rsa_keypair
from ..core.serverentry import ed25519_keypair_from_seed
from ..errors import ConfigError, ConfigProblem
from . import audit
from .errors import DatabaseError
from .models import NetworkKey

RSA_KINDS = ("remote_server_list", "feedback", "upgrade")
KINDS = ("remote_server_list", "server_entry", "feedback", "upgrade", "discovery_hmac")
PSIPHON_NAMES = {
    "remote_server_list": "RemoteServerListSignaturePublicKey",
    "server_entry": "ServerEntrySignaturePublicKey",
    "feedback": "FeedbackEncryptionPublicKey",
    "upgrade": "UpgradeSignaturePublicKey",
}
DEFAULT_RSA_BITS = 4096
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class KeyPair:
    private_key: str
    public_key: str


@dataclass(frozen=True)
class NetworkKeys:
    """The active key of every kind, loaded once per operation."""

    remote_server_list: KeyPair
    server_entry: KeyPair
    feedback: KeyPair
    upgrade: KeyPair
    discovery_hmac: KeyPair

    def public_keys(self) -> dict[str, str]:
        """The public keys under the names Psiphon's client configuration uses."""
        return {name: getattr(self, kind).public_key for kind, name in PSIPHON_NAMES.items()}


def check_rsa_bits(bits: int) -> None:
    if bits < MIN_RSA_BITS or bits % 256:
        raise ConfigError([ConfigProblem("--rsa-bits", f"must be a multiple of 256, at least {MIN_RSA_BITS}")])


def generate(kind: str, rsa_bits: int = DEFAULT_RSA_BITS) -> KeyPair:
    if kind in RSA_KINDS:
        return KeyPair(*generate_rsa_keypair(rsa_bits))
    if kind == "server_entry":
        return KeyPair(*ed25519_keypair_from_seed(secrets.token_bytes(32)))
    if kind == "discovery_hmac":
        value = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        return KeyPair(value, "")
    raise ConfigError([ConfigProblem("--kind", f"unknown key kind {kind!r} (one of {', '.join(KINDS)})")])


def active_key(session: Session, kind: str) -> NetworkKey | None:
    query = select(NetworkKey).where(NetworkKey.kind == kind, NetworkKey.retired_at.is_(None))
    return session.scalars(query).one_or_none()


def ensure_keys(session: Session, ctx: audit.Context, rsa_bits: int = DEFAULT_RSA_BITS) -> list[str]:
    """Create every missing kind (``init``); returns the kinds created."""
    check_rsa_bits(rsa_bits)
    created = []
    for kind in KINDS:
        if active_key(session, kind) is None:
            pair = generate(kind, rsa_bits)
            session.add(NetworkKey(kind=kind, private_key=pair.private_key, public_key=pair.public_key,
                                   created_at=ctx.now))
            created.append(kind)
    if created:
        session.flush()
        audit.record(session, ctx, "keys.create", "network_key", created, rsa_bits=rsa_bits)
    return created


def rotate(session: Session, ctx: audit.Context, kind: str, rsa_bits: int = DEFAULT_RSA_BITS) -> NetworkKey:
    if kind not in KINDS:
        raise ConfigError([ConfigProblem("--kind", f"unknown key kind {kind!r} (one of {', '.join(KINDS)})")])
    check_rsa_bits(rsa_bits)
    old = active_key(session, kind)
    if old is not None:
        old.retired_at = ctx.now
        session.flush()  # the partial unique index allows one active key per kind
    pair = generate(kind, rsa_bits)
    new = NetworkKey(kind=kind, private_key=pair.private_key, public_key=pair.public_key, created_at=ctx.now)
    session.add(new)
    session.flush()
    audit.record(session, ctx, "keys.rotate", "network_key", [str(new.id)], kind=kind,
                 retired=old.id if old is not None else None)
    return new


def load(session: Session) -> NetworkKeys:
    pairs = {}
    for kind in KINDS:
        key = active_key(session, kind)
        if key is None:
            raise DatabaseError(f"the network has no active {kind} key: run onehop network init")
        pairs[kind] = KeyPair(key.private_key, key.public_key)
    return NetworkKeys(**pairs)


def private_keys(session: Session, kind: str) -> list[str]:
    """Every private key of ``kind``: the active one first, then retired ones, newest
    first (feedback encrypted to a key before its rotation still decrypts)."""
    query = select(NetworkKey).where(NetworkKey.kind == kind).order_by(NetworkKey.id.desc())
    found = list(session.scalars(query))
    return [k.private_key for k in sorted(found, key=lambda k: k.retired_at is not None)]
