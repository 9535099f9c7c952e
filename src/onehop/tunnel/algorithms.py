"""SSH algorithm preferences and version strings."""

from __future__ import annotations

import os
import warnings

from ..core.ossh.regen import generate
from ..core.prng import SeededPRNG

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

# What a server accepts, in its order of preference, is more than our client offers. Psiphon's
# client randomizes, truncates and reorders its lists, moving to the front non-SHA-1
# algorithms it predicts a Psiphon server offers, and it abandons a tunnel on which a SHA-1
# KEX, host key or MAC was negotiated ("unexpected SHA-1 algorithm negotiated"). So a server
# must accept every non-SHA-1 algorithm that client may put first: ML-KEM, group exchange,
# aes192-ctr and, for plain SSH (where Psiphon's client sends no NoEncryptThenMACHash), the
# ETM MACs. Our own client never offers the ETM ones, so OSSH lengths stay obfuscated.
SERVER_ENCRYPTION_ALGS = (*ENCRYPTION_ALGS, "aes192-ctr")
SERVER_MAC_ALGS = (*MAC_ALGS[:-1], "hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com",
                   *MAC_ALGS[-1:])
SERVER_KEX_ALGS = (*KEX_ALGS[:-1], "mlkem768x25519-sha256", "diffie-hellman-group-exchange-sha256",
                   *KEX_ALGS[-1:])


OPENSSH_VERSION_PATTERN = r"OpenSSH_[7-8]\.[0-9]"


def openssh_version(prng: SeededPRNG | None = None) -> str:
    """An identification software version like Psiphon's, ``OpenSSH_[7-8].[0-9]``: drawn
    from ``prng`` (a server seeds it from its key, so its version is stable), or afresh."""
    prng = prng if prng is not None else SeededPRNG(os.urandom(32))
    return generate(OPENSSH_VERSION_PATTERN, prng).decode("ascii")
