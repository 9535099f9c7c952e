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
* asyncssh appends each received chunk to an immutable ``bytes`` buffer. A 64 KiB
  packet that arrives in eight reads is then copied 4.5 times before it is even
  decrypted; in profiles of a one-stream download this was a quarter of the client's
  CPU. Once the first NEWKEYS is in (the version exchange is over and only packets
  follow), the buffer becomes a ``bytearray`` that grows in place.
* Window updates. asyncssh returns a channel's window only once half of it is consumed
  (4 MiB of our 8 MiB). Psiphon's Go SSH caps the window it believes the other end granted
  at 4 x 32 KiB, whatever the confirmation says, and then waits for a WINDOW_ADJUST that
  would never come: uploads from Psiphon's client stalled at 128 KiB. Our channels return
  window once ``WINDOW_ADJUST_AFTER`` bytes are consumed, as Go's own code does (it adjusts
  after three packets).
"""

from __future__ import annotations

from asyncssh.constants import MSG_CHANNEL_WINDOW_ADJUST, MSG_IGNORE
from asyncssh.encryption import GCMEncryption
from asyncssh.packet import UInt32

CHANNEL_WINDOW = 8 * 1024 * 1024
CHANNEL_MAX_PACKET = 64 * 1024

#: Consumed bytes after which a channel returns them to the peer: below half of the 128 KiB
#: a Psiphon peer believes it has, above one 32 KiB packet of it.
WINDOW_ADJUST_AFTER = 48 * 1024

_EMPTY_IGNORE = (b"\x00\x00\x00\x00",)  # String(b""): the only argument asyncssh's filler has


def is_filler_ignore(pkttype: int, args: tuple) -> bool:
    return pkttype == MSG_IGNORE and args == _EMPTY_IGNORE


def return_window_early(chan) -> None:
    """Make ``chan`` send WINDOW_ADJUST once ``WINDOW_ADJUST_AFTER`` bytes are consumed.

    Replaces asyncssh's ``_deliver_data`` (whose own rule, at half the window, also returns
    window for bytes still waiting in its buffer while the session is paused, so a slow
    destination let a channel's buffer grow by a window at every resume). Relies on
    ``_init_recv_window``, ``_recv_window``, ``_recv_buf``, ``_encoding`` and ``_session``
    (checked by tests/e2e/test_capped_peer_window.py). Window is returned only for bytes
    handed to the session, so flow control holds at the channel's full window.
    """
    if chan._encoding is not None:
        raise ValueError("return_window_early is for byte channels")

    def deliver_returning_window(data, datatype):
        consumed = chan._init_recv_window - chan._recv_window
        if consumed >= WINDOW_ADJUST_AFTER:
            # Bytes still queued behind this one were counted when they arrived but are not
            # consumed yet: return only what has reached the session.
            consumed -= sum(len(queued) for queued, _ in chan._recv_buf)
            if consumed >= WINDOW_ADJUST_AFTER:
                chan.send_packet(MSG_CHANNEL_WINDOW_ADJUST, UInt32(consumed))
                chan._recv_window += consumed
        if chan._session is not None:  # asyncssh's own delivery, without its window rule
            chan._session.data_received(data, datatype)

    chan._deliver_data = deliver_returning_window


def use_growable_receive_buffer(conn) -> None:
    """Called before each ``data_received``: switch to an in-place buffer when keyed.

    Relies on asyncssh's ``_inpbuf`` and ``_recv_encryption`` (checked by
    tests/e2e/test_tunnel_e2e.py). With AES-GCM every later use of the buffer slices,
    measures or hands it to OpenSSL, which a ``bytearray`` supports with the same
    results; asyncssh's ChaCha20-Poly1305 insists on ``bytes``, so other ciphers keep
    the original buffer.
    """
    if isinstance(conn._recv_encryption, GCMEncryption) and type(conn._inpbuf) is bytes:
        conn._inpbuf = bytearray(conn._inpbuf)


def tune_client_connection(conn):
    """No filler IGNOREs, an in-place receive buffer: for one client connection.

    (The server's connection class overrides the same two methods instead.)
    """
    send_packet = conn.send_packet

    def send_packet_without_filler(pkttype, *args, handler=None):
        if not is_filler_ignore(pkttype, args):
            send_packet(pkttype, *args, handler=handler)

    conn.send_packet = send_packet_without_filler
    data_received = conn.data_received

    def data_received_in_place(data, datatype=None):
        use_growable_receive_buffer(conn)
        data_received(data, datatype)

    conn.data_received = data_received_in_place
    return conn
