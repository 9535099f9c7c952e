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
* asyncssh appends each received chunk to an immutable ``bytes`` buffer and re-slices
  it for every packet: a 256 KiB read holding four 64 KiB packets was copied about five
  times before decryption. With AES-GCM the buffer is a memoryview of the read instead
  (``asyncssh_compat.receive``).
* asyncssh's send_packet copies a data packet about seven times and builds an AESGCM object
  for each; channel data under AES-GCM goes through ``asyncssh_compat.send_data_fast``, and
  a tunnel channel's write builds all the packets its window allows into one buffer
  (``asyncssh_compat.write_in_batches``): one copy of the data instead of about six.
* Received data reaches its socket without a user-space copy: a relay's session gets each
  payload as a view of its decrypted packet, and the views of one read go out in one
  ``writev`` (``net/gatherwrite.py``). Slicing and then joining them had been 13 % of the
  client's CPU downloading.
* asyncssh ignores the transport's pause_writing: tunnel channels went on writing up to
  their whole windows into the transport's buffer. Their sources now pause with it.
* asyncssh replaces its keepalive timer (cancel one, schedule one) on every read; a read
  now only notes the time, and the timer re-arms itself for the deadline when it fires.
* asyncssh formats a log message for every packet sent and received even when nothing
  is logged; unless packet logging is on (debug level 3) those calls are skipped.
* Window updates. asyncssh returns a channel's window only once half of it is consumed
  (4 MiB of our 8 MiB). Psiphon's Go SSH caps the window it believes the other end granted
  at 4 x 32 KiB, whatever the confirmation says, and then waits for a WINDOW_ADJUST that
  would never come: uploads from Psiphon's client stalled at 128 KiB. Our channels return
  window once ``WINDOW_ADJUST_AFTER`` bytes are consumed, as Go's own code does (it adjusts
  after three packets), once per read rather than once per packet; to a peer that opened
  with a larger window of its own (onehop, OpenSSH), once a quarter of the smaller window.
"""

from __future__ import annotations

from asyncssh.constants import MSG_IGNORE

from . import asyncssh_compat

CHANNEL_WINDOW = 8 * 1024 * 1024
CHANNEL_MAX_PACKET = 64 * 1024

#: Consumed bytes after which a channel returns them to a Psiphon peer: below half of the
#: 128 KiB it believes it has, above one 32 KiB packet of it (peers with larger windows of
#: their own get window back less often: asyncssh_compat.return_window_early).
WINDOW_ADJUST_AFTER = 48 * 1024

_EMPTY_IGNORE = (b"\x00\x00\x00\x00",)  # String(b""): the only argument asyncssh's filler has


def is_filler_ignore(pkttype: int, args: tuple) -> bool:
    return pkttype == MSG_IGNORE and args == _EMPTY_IGNORE


def tune_tunnel_channel(chan) -> None:
    """Make ``chan`` return window once ``WINDOW_ADJUST_AFTER`` bytes reached its session,
    take whole GCM packets of data straight from the read, and write in batches."""
    asyncssh_compat.return_window_early(chan, WINDOW_ADJUST_AFTER)
    asyncssh_compat.write_in_batches(chan)


def tune_client_connection(conn):
    """No filler IGNOREs, cheaper data packets, a zero-copy receive buffer, a lazy keepalive timer, no
    per-packet log calls: for one client connection (the server's connection class overrides the same
    methods instead).
    """
    send_packet = conn.send_packet

    def send_packet_without_filler(pkttype, *args, handler=None):
        if not is_filler_ignore(pkttype, args) and not asyncssh_compat.send_data_fast(conn, pkttype, args, handler):
            send_packet(pkttype, *args, handler=handler)

    conn.send_packet = send_packet_without_filler
    asyncssh_compat.zero_copy_receive(conn)
    asyncssh_compat.lazy_keepalive_timer(conn)
    asyncssh_compat.pause_tunnel_channels_with_transport(conn)
    asyncssh_compat.quiet_packet_log(conn)
    return conn
