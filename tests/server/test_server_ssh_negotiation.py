"""What Psiphon's client can negotiate with a onehop server (found by the live interop test).

Psiphon's client fails a tunnel on which any SHA-1 algorithm was negotiated, after moving
to the front of its lists the non-SHA-1 algorithms it predicts a Psiphon server offers; and
with several clients at once, asyncssh signed one connection's key exchange with the host
key signature algorithm another connection had chosen.
"""

from __future__ import annotations

import asyncssh
from asyncssh.encryption import get_encryption_algs
from asyncssh.kex import get_kex_algs
from asyncssh.mac import get_mac_algs

from onehop.server.generate import generate_server
from onehop.tunnel.algorithms import (ENCRYPTION_ALGS, KEX_ALGS, MAC_ALGS, SERVER_ENCRYPTION_ALGS,
                                      SERVER_KEX_ALGS, SERVER_MAC_ALGS)
from onehop.tunnel.server import PsiphonServerConnection

#: Non-SHA-1 algorithms of Psiphon's client (psiphon/common/crypto/ssh): its defaults and
#: those it adds when predicting a Psiphon server's randomized lists.
PSIPHON_NON_SHA1 = {
    "kex": ["mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org",
            "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
            "diffie-hellman-group14-sha256", "diffie-hellman-group16-sha512",
            "diffie-hellman-group-exchange-sha256"],
    "cipher": ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
               "aes128-ctr", "aes192-ctr", "aes256-ctr"],
    "mac": ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512"],
}


def test_the_server_accepts_every_non_sha1_algorithm_psiphons_client_may_put_first():
    server = {"kex": SERVER_KEX_ALGS, "cipher": SERVER_ENCRYPTION_ALGS, "mac": SERVER_MAC_ALGS}
    supported = {"kex": get_kex_algs(), "cipher": get_encryption_algs(), "mac": get_mac_algs()}
    for kind, names in PSIPHON_NON_SHA1.items():
        assert [n for n in names if n not in server[kind]] == [], kind
        assert [n for n in server[kind] if n.encode() not in supported[kind]] == [], kind


def test_sha1_stays_last_and_our_client_keeps_its_own_lists():
    for server in (SERVER_KEX_ALGS, SERVER_MAC_ALGS):
        assert "sha1" in server[-1] and not any("sha1" in name for name in server[:-1])
    assert not any("etm" in name for name in MAC_ALGS)  # OSSH: packet lengths stay obfuscated
    assert set(KEX_ALGS) <= set(SERVER_KEX_ALGS) and set(ENCRYPTION_ALGS) <= set(SERVER_ENCRYPTION_ALGS)


def _connection(options: asyncssh.SSHServerConnectionOptions) -> PsiphonServerConnection:
    conn = PsiphonServerConnection.__new__(PsiphonServerConnection)  # only the host key choice is used
    conn._server_host_keys = options.server_host_keys
    conn._server_host_key = None
    return conn


def test_each_connection_signs_with_the_host_key_algorithm_it_negotiated():
    key = asyncssh.import_private_key(generate_server("127.0.0.1", ossh_port=443).config["SSHPrivateKey"])
    options = asyncssh.SSHServerConnectionOptions(server_host_keys=[key])
    first, second, third = _connection(options), _connection(options), _connection(options)
    assert first.choose_server_host_key([b"rsa-sha2-256"])
    assert second.choose_server_host_key([b"rsa-sha2-512"])  # a concurrent client, before first signs
    assert third.choose_server_host_key([b"ssh-rsa"])
    assert first.get_server_host_key().sig_algorithm == b"rsa-sha2-256"
    assert second.get_server_host_key().sig_algorithm == b"rsa-sha2-512"
    assert third.get_server_host_key().sig_algorithm == b"ssh-rsa"
