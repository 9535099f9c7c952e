"""Psiphon's seeded PRNG: a ChaCha20 keystream with Go ``math/rand`` style helpers.

Both OSSH ends derive padding lengths and bytes from this generator, so a client can
make the server replay its padding. Bit-exact agreement with Psiphon matters for the
server's identification-line padding (derived from the client's seed message).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEED_LENGTH = 32
_REKEY_AFTER = (1 << 38) - 64  # bytes per (key, nonce) before the rekey counter moves
_BLOCK = 4096  # keystream bytes fetched at a time


def salted_seed(seed: bytes, salt: str) -> bytes:
    """HKDF-SHA256(ikm=seed, salt=salt, no info), 32 bytes: Psiphon's NewSaltedSeed."""
    return HKDF(algorithm=hashes.SHA256(), length=SEED_LENGTH, salt=salt.encode(), info=None).derive(seed)


class SeededPRNG:
    """Deterministic byte and integer source; ``seed`` is 32 bytes."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_LENGTH:
            raise ValueError(f"PRNG seed must be {SEED_LENGTH} bytes, got {len(seed)}")
        self._seed = bytes(seed)
        self._rekey_counter = 0
        self._emitted = 0
        self._buffer = b""
        self._pos = 0
        self._new_stream()

    @classmethod
    def salted(cls, seed: bytes, salt: str) -> SeededPRNG:
        return cls(salted_seed(seed, salt))

    def _new_stream(self) -> None:
        nonce = self._rekey_counter.to_bytes(8, "big") + b"\x00" * 4
        # cryptography's ChaCha20 takes a 16-byte "nonce": 4-byte LE block counter || 12-byte nonce.
        cipher = Cipher(algorithms.ChaCha20(self._seed, b"\x00" * 4 + nonce), mode=None)
        self._encryptor = cipher.encryptor()

    def read(self, n: int) -> bytes:
        """Return the next ``n`` keystream bytes."""
        out = bytearray()
        while n > 0:
            if self._pos >= len(self._buffer):
                self._refill()
            take = min(n, len(self._buffer) - self._pos)
            out += self._buffer[self._pos:self._pos + take]
            self._pos += take
            n -= take
        return bytes(out)

    def _refill(self) -> None:
        if self._emitted >= _REKEY_AFTER:
            self._rekey_counter += 1
            self._emitted = 0
            self._new_stream()
        size = min(_BLOCK, _REKEY_AFTER - self._emitted)
        self._buffer = self._encryptor.update(b"\x00" * size)
        self._emitted += size
        self._pos = 0

    def uint64(self) -> int:
        return int.from_bytes(self.read(8), "big")

    def int63(self) -> int:
        return self.uint64() & ((1 << 63) - 1)

    def int31(self) -> int:
        return self.int63() >> 32

    def int31n(self, n: int) -> int:
        """Go math/rand v1 Int31n: mask for powers of two, else rejection sampling."""
        if n <= 0:
            return 0
        if n & (n - 1) == 0:
            return self.int31() & (n - 1)
        limit = (1 << 31) - 1 - ((1 << 31) % n)
        v = self.int31()
        while v > limit:
            v = self.int31()
        return v % n

    def intn(self, n: int) -> int:
        """Uniform integer in [0, n); 0 when n <= 0 (as Psiphon's prng.Intn)."""
        if n <= 0:
            return 0
        if n >= (1 << 31):
            raise ValueError("intn supports n < 2**31 only")
        return self.int31n(n)

    def range(self, low: int, high: int) -> int:
        """Uniform integer in [low, high]."""
        if high < low:
            raise ValueError("range: high < low")
        return low + self.intn(high - low + 1)

    def padding(self, low: int, high: int) -> bytes:
        """``range(low, high)`` keystream bytes (Psiphon's Padding)."""
        return self.read(self.range(low, high))

    def flip_coin(self) -> bool:
        return self.int31n(2) == 1

    def shuffle(self, items: list[Any]) -> None:
        """In-place Fisher-Yates shuffle driven by this generator (not bit-exact with Go)."""
        for i in range(len(items) - 1, 0, -1):
            j = self.intn(i + 1)
            items[i], items[j] = items[j], items[i]


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()
