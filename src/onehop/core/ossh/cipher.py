"""OSSH key derivation, the RC4 stream and the prefix terminator."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .constants import (CLIENT_TO_SERVER_LABEL, HASH_ITERATIONS, KEY_LENGTH,
                        PREAMBLE_HEADER_LENGTH, PREFIX_TERMINATOR_LENGTH,
                        SERVER_TO_CLIENT_LABEL)


def derive_key(seed: bytes, keyword: bytes, label: bytes) -> bytes:
    """SHA1(seed || keyword || label), re-hashed 6000 times; the first 16 bytes."""
    digest = hashlib.sha1(seed + keyword + label).digest()
    for _ in range(HASH_ITERATIONS):
        digest = hashlib.sha1(digest).digest()
    return digest[:KEY_LENGTH]


class RC4Stream:
    """One direction's continuous RC4 keystream (encryption and decryption are the same)."""

    def __init__(self, key: bytes) -> None:
        self._ctx = Cipher(ARC4(key), mode=None).encryptor()

    def apply(self, data: bytes) -> bytes:
        return self._ctx.update(data) if data else b""


def derive_streams(seed: bytes, keyword: bytes) -> tuple[RC4Stream, RC4Stream]:
    """The (client-to-server, server-to-client) RC4 streams for a 16-byte seed."""
    return (RC4Stream(derive_key(seed, keyword, CLIENT_TO_SERVER_LABEL)),
            RC4Stream(derive_key(seed, keyword, SERVER_TO_CLIENT_LABEL)))


def make_terminator(keyword: bytes, first_bytes: bytes, label: bytes) -> bytes:
    """HKDF-SHA256(ikm=keyword, salt=first 24 bytes, info=label), 16 bytes."""
    if len(first_bytes) < PREAMBLE_HEADER_LENGTH:
        raise ValueError("a prefix terminator needs at least 24 bytes of prefix")
    if label not in (CLIENT_TO_SERVER_LABEL, SERVER_TO_CLIENT_LABEL):
        raise ValueError("unknown direction label")
    return HKDF(algorithm=hashes.SHA256(), length=PREFIX_TERMINATOR_LENGTH,
                salt=bytes(first_bytes[:PREAMBLE_HEADER_LENGTH]), info=label).derive(keyword)
