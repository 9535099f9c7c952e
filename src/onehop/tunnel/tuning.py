"""Data-path tuning of asyncssh for bulk tunnel traffic (see bench/throughput.py).

* Channel window and packet size. asyncssh gives direct-tcpip channels its own
  defaults (2 MiB window, 32 KiB packets) whatever the connection options say, so
  both ends pass these explicitly when they create a channel. 64 KiB packets halve
  the per-packet Python work; 128 KiB and up makes asyncssh's per-packet bytes
  objects cross glibc's 128 KiB mmap threshold and costs more than it saves. Peers
  that advertise less (Psiphon's Go code: 32 KiB) still get packets no larger than
  they asked for.
* asyncssh sends an empty SSH_MSG_IGNORE before every packet once keys are in use.
  With the ciphers onehop negotiates (GCM, ChaCha20-Poly1305, CTR with HMAC; no CBC)
  it protects nothing, doubles packets, encryptions and send() calls, and sets our
  traffic apart from OpenSSH and Go's x/crypto/ssh, which send none.
"""

from __future__ import annotations

from asyncssh.constants import MSG_IGNORE

CHANNEL_WINDOW = 8 * 1024 * 1024
CHANNEL_MAX_PACKET = 64 * 1024

_EMPTY_IGNORE = (b"\x00\x00\x00\x00",)  # String(b""): the only argument asyncssh's filler has


def is_filler_ignore(pkttype: int, args: tuple) -> bool:
    return pkttype == MSG_IGNORE and args == _EMPTY_IGNORE


def skip_filler_ignores(conn):
    """Make one asyncssh connection stop sending its per-packet empty IGNORE."""
    send_packet = conn.send_packet

    def send_packet_without_filler(pkttype, *args, handler=None):
        if not is_filler_ignore(pkttype, args):
            send_packet(pkttype, *args, handler=handler)

    conn.send_packet = send_packet_without_filler
    return conn
