"""SSH algorithm preferences and version strings."""

from __future__ import annotations

import warnings
from typing import Callable

# Psiphon's clients still negotiate classic diffie-hellman groups, so every such tunnel would
# print cryptography's FFDH deprecation warning on the server operator's terminal.
warnings.filterwarnings("ignore", message=r"Diffie-Hellman over finite fields \(FFDH\) is deprecated")

# aes128-gcm first: measured fastest here; the others keep Psiphon peers happy.
ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com",
    "aes128-ctr", "aes256-ctr",
)
# Psiphon's OSSH servers offer only non-ETM MACs; ETM ones would leave lengths clear.
MAC_ALGS = ("hmac-sha2-256", "hmac-sha2-512", "hmac-sha1")
KEX_ALGS = (
    "curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384", "ecdh-sha2-nistp521", "diffie-hellman-group14-sha256",
    "diffie-hellman-group16-sha512", "diffie-hellman-group14-sha1",
)
COMPRESSION_ALGS = ("none",)


def openssh_version(randint: Callable[[int, int], int]) -> str:
    """An identification software version like Psiphon's: ``OpenSSH_[7-8].[0-9]``."""
    return f"OpenSSH_{randint(7, 8)}.{randint(0, 9)}"
