"""Server role of OSSH: validating the client's seed message, with or without prefix.

Validation order follows Psiphon: the magic value is checked before the padding length
is trusted (a chosen-ciphertext probe could otherwise learn from the length check);
only a seed whose magic validated is recorded in the replay history. Any failure raises
RemoteProtocolError; the adapter must then stay silent (see ``net.ossh``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping

from ...errors import LocalProtocolError, OSSHReason, RemoteProtocolError
from ..prng import SeededPRNG
from ..sansio import NEED_DATA
from .cipher import RC4Stream, derive_key
from .constants import (CLIENT_TO_SERVER_LABEL, MAGIC_VALUE, MAX_PADDING, MIN_CLIENT_PADDING,
                        PADDING_PRNG_SALT, PREAMBLE_HEADER_LENGTH, SEED_LENGTH,
                        SERVER_TO_CLIENT_LABEL)
from .events import KeysNeeded, PreambleReceived
from .prefix import (DEFAULT_SERVER_PREFIX_SPECS, TerminatorScanner, parse_prefix_header_fixed,
                     server_reply_pattern, terminated_prefix)
from .sshframing import server_line_padding
from .stream import ObfuscatedStream, ReadState

_HEADER, _SEARCH, _PADDING, _PREFIX_FIXED, _PREFIX_NAME = range(5)


class ServerObfuscator(ObfuscatedStream):
    """OSSH server.

    ``replay_check(seed)`` returns True for a fresh seed (bind it to a SeedHistory and a
    clock); ``random_bytes(n)`` supplies randomness for the prefix reply and for legacy
    clients that send fewer than 32 padding bytes. With ``defer_key_derivation`` the
    server emits ``KeysNeeded(seed)`` and waits for ``provide_keys`` instead of deriving
    the keys itself.
    """

    def __init__(self, keyword: str, *, replay_check: Callable[[bytes], bool],
                 random_bytes: Callable[[int], bytes],
                 prefix_specs: Mapping[str, str] = DEFAULT_SERVER_PREFIX_SPECS,
                 defer_key_derivation: bool = False) -> None:
        super().__init__(keyword)
        self._defer_keys = defer_key_derivation
        self._keys: dict[bytes, tuple[bytes, bytes]] = {}
        self._keys_requested: set[bytes] = set()
        self._replay_check = replay_check
        self._random_bytes = random_bytes
        self._prefix_specs = dict(prefix_specs)
        self._stage = _HEADER
        self._prefix_removed = False
        self._scanner: TerminatorScanner | None = None
        self._c2s: RC4Stream | None = None
        self._seed = b""
        self._client_padding_length = 0
        self._prefix_name_length = 0
        self.prefix_spec_name: str | None = None
        self.padding_length: int | None = None  # our line padding: downstream_ossh_padding

    def provide_keys(self, seed: bytes, c2s_key: bytes, s2c_key: bytes) -> None:
        """The derived (client-to-server, server-to-client) keys for ``seed``."""
        self._keys[bytes(seed)] = (c2s_key, s2c_key)

    def _key_pair(self, seed: bytes) -> tuple[bytes, bytes] | None:
        if seed in self._keys:
            return self._keys[seed]
        if not self._defer_keys:
            self._keys[seed] = (derive_key(seed, self._keyword, CLIENT_TO_SERVER_LABEL),
                                derive_key(seed, self._keyword, SERVER_TO_CLIENT_LABEL))
            return self._keys[seed]
        if seed not in self._keys_requested:
            self._keys_requested.add(seed)
            self._events.append(KeysNeeded(seed))
        return None

    def send(self, data: bytes) -> None:
        if self._read_state is ReadState.PREAMBLE or self._read_state is ReadState.ERROR:
            raise LocalProtocolError(OSSHReason.SEND_BEFORE_PREAMBLE, "no valid client preamble yet")
        super().send(data)

    # -- preamble parsing ---------------------------------------------------------------

    def _read_preamble(self) -> bool:
        stage = self._stage
        if stage == _HEADER:
            return self._read_header()
        if stage == _SEARCH:
            return self._search_terminator()
        if stage == _PADDING:
            return self._read_padding()
        if stage == _PREFIX_FIXED:
            return self._read_prefix_fixed()
        return self._read_prefix_name()

    def _take(self, count: int) -> bytes | None:
        if len(self._inbox) < count:
            return None
        taken = bytes(self._inbox[:count])
        del self._inbox[:count]
        return taken

    def _read_header(self) -> bool:
        if len(self._inbox) < PREAMBLE_HEADER_LENGTH:
            return False
        header = bytes(self._inbox[:PREAMBLE_HEADER_LENGTH])
        seed = header[:SEED_LENGTH]
        keys = self._key_pair(seed)
        if keys is None:
            return False  # waiting for provide_keys
        c2s = RC4Stream(keys[0])
        magic, padding_length = struct.unpack(">Ii", c2s.apply(header[SEED_LENGTH:]))
        if magic != MAGIC_VALUE:
            if self._prefix_removed:
                raise RemoteProtocolError(OSSHReason.BAD_MAGIC, "invalid magic value after prefix")
            self._scanner = TerminatorScanner(self._keyword, CLIENT_TO_SERVER_LABEL)
            self._stage = _SEARCH
            return True
        if not self._replay_check(seed):
            raise RemoteProtocolError(OSSHReason.DUPLICATE_SEED, "replayed obfuscation seed")
        if not 0 <= padding_length <= MAX_PADDING:
            raise RemoteProtocolError(OSSHReason.BAD_PADDING_LENGTH, str(padding_length))
        del self._inbox[:PREAMBLE_HEADER_LENGTH]
        self._seed, self._c2s = seed, c2s
        self._client_padding_length = padding_length
        self._stage = _PADDING
        return True

    def _search_terminator(self) -> bool:
        assert self._scanner is not None
        rest = self._scanner.feed(bytes(self._inbox))
        self._inbox.clear()
        if rest is NEED_DATA:
            return False
        self._inbox += rest
        self._prefix_removed = True
        self._stage = _HEADER
        return True

    def _read_padding(self) -> bool:
        padding = self._take(self._client_padding_length)
        if padding is None:
            return False
        assert self._c2s is not None
        padding = self._c2s.apply(padding)
        prng_seed = padding[:32] if len(padding) >= MIN_CLIENT_PADDING else self._random_bytes(32)
        self._padding_prng = SeededPRNG.salted(prng_seed, PADDING_PRNG_SALT)
        if self._prefix_removed:
            self._stage = _PREFIX_FIXED
        else:
            self._finish_preamble()
        return True

    def _read_prefix_fixed(self) -> bool:
        fixed = self._take(4)
        if fixed is None:
            return False
        assert self._c2s is not None
        self._prefix_name_length = parse_prefix_header_fixed(self._c2s.apply(fixed))
        self._stage = _PREFIX_NAME
        return True

    def _read_prefix_name(self) -> bool:
        name = self._take(self._prefix_name_length)
        if name is None:
            return False
        assert self._c2s is not None
        self.prefix_spec_name = self._c2s.apply(name).decode("utf-8", errors="replace")
        self._finish_preamble()
        return True

    def _finish_preamble(self) -> None:
        # The c2s stream continues into the identification line; s2c starts fresh.
        self._read_cipher = self._c2s
        self._write_cipher = RC4Stream(self._keys[self._seed][1])
        self._read_state = ReadState.IDENTIFICATION_LINES
        self._events.append(PreambleReceived(self._client_padding_length, self.prefix_spec_name))

    # -- first write: prefix reply and identification-line padding ---------------------

    def _make_preamble_writes(self) -> list[bytes]:
        writes: list[bytes] = []
        head = b""
        if self.prefix_spec_name is not None:
            pattern = server_reply_pattern(self.prefix_spec_name, self._prefix_specs)
            prefix, generated = terminated_prefix(pattern, self._random_bytes(32),
                                                  self._keyword, SERVER_TO_CLIENT_LABEL)
            writes.append(prefix[:generated])
            head = prefix[generated:]
        assert self._padding_prng is not None and self._write_cipher is not None
        padding = server_line_padding(self._padding_prng)
        self.padding_length = len(padding)
        writes.append(head + self._write_cipher.apply(padding))
        return writes
