"""Client role of OSSH: the seed message, optionally behind a prefix."""

from __future__ import annotations

import struct

from ..prng import SEED_LENGTH as PRNG_SEED_LENGTH
from ..prng import SeededPRNG
from ..sansio import NEED_DATA
from .cipher import derive_streams
from .constants import (CLIENT_TO_SERVER_LABEL, MAGIC_VALUE, MAX_PADDING, MIN_CLIENT_PADDING,
                        PADDING_PRNG_SALT, SEED_LENGTH, SERVER_TO_CLIENT_LABEL)
from .prefix import PrefixSpec, TerminatorScanner, encode_prefix_header, terminated_prefix
from .stream import ObfuscatedStream, ReadState


class ClientObfuscator(ObfuscatedStream):
    """OSSH client. Randomness is passed in: ``seed`` (16 bytes, sent in clear),
    ``padding_prng_seed`` (32 bytes; drives seed-message and KEX padding) and, with a
    prefix, ``prefix_seed`` (32 bytes; drives the prefix generator)."""

    def __init__(self, keyword: str, *, seed: bytes, padding_prng_seed: bytes,
                 min_padding: int | None = None, max_padding: int | None = None,
                 prefix: PrefixSpec | None = None, prefix_seed: bytes | None = None) -> None:
        super().__init__(keyword)
        if len(seed) != SEED_LENGTH:
            raise ValueError(f"OSSH seed must be {SEED_LENGTH} bytes")
        if prefix is not None and (prefix_seed is None or len(prefix_seed) != PRNG_SEED_LENGTH):
            raise ValueError("a prefix needs a 32-byte prefix_seed")
        self._seed = bytes(seed)
        self._write_cipher, self._read_cipher = derive_streams(self._seed, self._keyword)
        self._seed_message_prng = SeededPRNG(padding_prng_seed)
        self._padding_prng = SeededPRNG.salted(padding_prng_seed, PADDING_PRNG_SALT)
        low = max(MIN_CLIENT_PADDING, min_padding or 0)
        high = MAX_PADDING if max_padding is None else min(MAX_PADDING, max_padding)
        self._padding_range = (low, max(low, high))
        self._prefix = prefix
        self._prefix_seed = prefix_seed
        self.padding_length: int | None = None  # reported as upstream_ossh_padding
        if prefix is None:
            self._read_state = ReadState.IDENTIFICATION_LINES
        else:
            self._scanner = TerminatorScanner(self._keyword, SERVER_TO_CLIENT_LABEL)

    @property
    def prefix_spec_name(self) -> str | None:
        return self._prefix.name if self._prefix else None

    def _make_preamble_writes(self) -> list[bytes]:
        padding = self._seed_message_prng.padding(*self._padding_range)
        self.padding_length = len(padding)
        body = struct.pack(">II", MAGIC_VALUE, len(padding)) + padding
        if self._prefix is not None:
            body += encode_prefix_header(self._prefix.name)
        assert self._write_cipher is not None
        seed_message = self._seed + self._write_cipher.apply(body)
        if self._prefix is None:
            return [seed_message]
        assert self._prefix_seed is not None
        prefix, generated = terminated_prefix(self._prefix.pattern, self._prefix_seed,
                                              self._keyword, CLIENT_TO_SERVER_LABEL)
        # Psiphon writes the generated prefix on its own, then the rest.
        return [prefix[:generated], prefix[generated:] + seed_message]

    def _read_preamble(self) -> bool:
        # Only reached with a prefix: skip the server's plaintext prefix and terminator.
        rest = self._scanner.feed(bytes(self._inbox))
        self._inbox.clear()
        if rest is NEED_DATA:
            return False
        self._inbox += rest
        self._read_state = ReadState.IDENTIFICATION_LINES
        return True
