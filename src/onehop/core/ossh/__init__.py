"""Obfuscated SSH (OSSH), sans-IO, both roles, wire-compatible with Psiphon.

Layers, downstream (the censor-facing wire) to upstream (the SSH library):

* ``client.ClientObfuscator`` / ``server.ServerObfuscator`` handle the preamble: the
  client seed message (optionally behind a prefix and its HKDF terminator) and, on the
  server, its validation with replay protection (``history.SeedHistory``).
* ``stream.ObfuscatedStream`` (their shared base) obfuscates the SSH identification
  lines and the key-exchange packets with RC4 until the first ``SSH_MSG_NEWKEYS`` in
  each direction, re-framing the peer's deliberately mis-aligned KEX packets so that a
  stock SSH library accepts them, then passes bytes through untouched.

Vocabulary (``core.sansio``'s dialect): ``receive_data``/``receive_eof`` feed wire bytes,
``next_event`` returns ``PreambleReceived``/``KeysNeeded``/``DataReceived``/``EOFReceived``
or ``NEED_DATA``; ``send`` takes SSH bytes and ``data_to_send``/``writes_to_send`` give
the wire bytes.
"""

from .client import ClientObfuscator
from .events import DataReceived, EOFReceived, Event, PreambleReceived
from .history import ReplayHistory, SeedHistory
from .prefix import PrefixSpec, default_client_prefix, DEFAULT_SERVER_PREFIX_SPECS
from .server import ServerObfuscator

__all__ = [
    "ClientObfuscator", "ServerObfuscator", "ReplayHistory", "SeedHistory", "PrefixSpec",
    "default_client_prefix", "DEFAULT_SERVER_PREFIX_SPECS",
    "Event", "PreambleReceived", "DataReceived", "EOFReceived",
]
