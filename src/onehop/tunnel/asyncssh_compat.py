"""Every use of asyncssh's private internals, in one module.

onehop needs a few things asyncssh has no public API for: raw-payload global requests
and answers given later (Psiphon's API), handlers for Psiphon's own global requests and
channel types, a host key chosen per connection, a channel window returned earlier than
asyncssh returns it, and cheaper receive and send paths for bulk data under AES-GCM (the
cipher onehop's client and OpenSSH negotiate). Each is a named function or a small mixin
here; no other onehop module reads or writes an attribute, or overrides a method, of an
asyncssh object whose name starts with an underscore.

What this module relies on is checked, on real loopback connections, by
tests/tunnel/test_asyncssh_compat.py: run it after any asyncssh upgrade (written against
asyncssh 2.24.1, the version pinned in network/constraints/client-build.txt; pyproject.toml
allows 2.24.x only). The data path functions (``receive``, ``send_data_fast``, the batched
write, the window, keepalive and logging hooks) run once per packet, per read or per
write; bench/server_data_path.py measures them under load.
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
from typing import Any, ClassVar
from collections.abc import Awaitable, Callable

import asyncssh
from asyncssh.connection import SSHConnection
from asyncssh.constants import MSG_CHANNEL_DATA, MSG_CHANNEL_WINDOW_ADJUST
from asyncssh.encryption import GCMEncryption
from asyncssh.logging import SSHLogger
from asyncssh.misc import map_handler_name
from asyncssh.packet import SSHPacket, UInt32
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..net.ownedbuffer import OwnedBuffer

#: An asyncssh connection (or its GCMEncryption) as this module sees it: through private
#: attributes that carry no types to rely on (tests/tunnel/test_asyncssh_compat.py checks
#: that they exist).
PrivateConn = Any

# -- global requests -----------------------------------------------------------------------


def send_global_request(conn: asyncssh.SSHClientConnection, name: bytes,
                        payload: bytes) -> Awaitable[tuple[int, SSHPacket]]:
    """Send global request ``name`` with ``payload`` right after the want-reply flag (not an
    SSH string: Psiphon's framing); awaits (MSG_REQUEST_SUCCESS or _FAILURE, reply packet)."""
    return conn._make_global_request(name, payload)


def answer_global_request(conn: PrivateConn, result: bool | bytes) -> None:
    """Answer the oldest global request a handler left unanswered (returned None):
    ``False`` fails it, ``True`` or bytes succeed (bytes are the raw reply payload)."""
    conn._report_global_response(result)


def is_attached(conn: PrivateConn) -> bool:
    """Whether the connection still has its transport (not yet lost or closed)."""
    return conn._transport is not None


def server_object(conn: asyncssh.SSHServerConnection) -> Any:
    """The ``SSHServer`` instance asyncssh created for this connection."""
    return conn._owner


def open_direct_tcpip(conn: asyncssh.SSHServerConnection, packet: SSHPacket):
    """asyncssh's handling of a direct-tcpip open (for a channel type that is one under
    another name): returns (channel, session) from ``SSHServer.connection_requested``."""
    return conn._process_direct_tcpip_open(packet)


class Handlers:
    """Mixin: name handlers for global requests and channel types in two class dicts.

    ``GLOBAL_REQUESTS`` maps a request name to a method taking the request's SSHPacket
    (positioned after the want-reply flag); it returns True/False to answer now or None to
    answer later with ``answer_global_request``. ``CHANNEL_OPENS`` maps a channel type to a
    method taking the open's SSHPacket (after the window fields) and returning (channel,
    session) or raising ChannelOpenError. asyncssh finds handlers by method name; this
    gives each entry the name it looks for.
    """

    GLOBAL_REQUESTS: ClassVar[dict[str, str]] = {}
    CHANNEL_OPENS: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for request, method in cls.GLOBAL_REQUESTS.items():
            setattr(cls, f"_process_{map_handler_name(request)}_global_request", getattr(cls, method))
        for chantype, method in cls.CHANNEL_OPENS.items():
            setattr(cls, f"_process_{map_handler_name(chantype)}_open", getattr(cls, method))


class GlobalRequestsWaitForWriting:
    """Mixin: global requests already read, and tunnel channels' sources, wait while the
    transport's writing is paused.

    asyncssh ignores pause_writing: a client that never reads our answers (each may be far
    larger than its request) would have every one of them queued in the server, and every
    tunnel channel would go on writing up to its whole window into the transport's buffer
    (``hold_tunnel_channels``).
    """

    _writing_paused = False
    _global_request_deferred = False
    _global_request_queue: list[Any]  # asyncssh's, on the connection class this is mixed into

    def pause_writing(self) -> None:
        self._writing_paused = True
        hold_tunnel_channels(self)

    def resume_writing(self) -> None:
        self._writing_paused = False
        release_tunnel_channels(self)
        if self._global_request_deferred:
            self._global_request_deferred = False
            if self._global_request_queue and getattr(self, "_transport", None) is not None:
                super()._service_next_global_request()  # type: ignore[misc]

    def _service_next_global_request(self) -> None:
        if self._writing_paused:
            self._global_request_deferred = True
            return
        super()._service_next_global_request()  # type: ignore[misc]


def choose_own_host_key(conn: asyncssh.SSHServerConnection, peer_host_key_algs) -> bool:
    """asyncssh's host key choice, on a copy of the keypair for this connection alone.

    asyncssh sets the signature algorithm (ssh-rsa, rsa-sha2-256, rsa-sha2-512) on the one
    keypair object that every connection shares, and only when it differs from the last
    one set: a connection could then sign its key exchange with the algorithm another
    connection chose meanwhile, and the client rejects the signature.
    """
    for alg in peer_host_key_algs:
        keypair = conn._server_host_keys.get(alg)
        if keypair:
            keypair = copy.copy(keypair)
            keypair.set_sig_algorithm(alg)
            conn._server_host_key = keypair
            return True
    return False


# -- transport backpressure ----------------------------------------------------------------
#
# A channel's window bounds what its peer has yet to read, not what waits in our own
# transport: with the 8 MiB windows of tunnel channels, eight busy channels could queue
# 64 MiB there, and Python 3.11's transport buffer moves its whole content on appends
# (8 streams through one tunnel cost several times more CPU per GiB than one stream).
# While the transport is paused, the sessions of tunnel channels are paused instead: the
# sockets that feed them stop being read.


def hold_tunnel_channels(conn: PrivateConn) -> None:
    """The transport's buffer is full: pause the sources of the connection's tunnel channels."""
    conn._onehop_writing_paused = True
    for chan in list(conn._channels.values()):
        _hold(chan)


def release_tunnel_channels(conn: PrivateConn) -> None:
    """The transport's buffer drained: resume the sources ``hold_tunnel_channels`` paused
    (unless a channel's own send buffer still wants its source paused)."""
    conn._onehop_writing_paused = False
    for chan in list(conn._channels.values()):
        if chan.__dict__.pop("_onehop_held", False) and chan._session is not None and not chan._send_paused:
            chan._session.resume_writing()


def _hold(chan: PrivateConn) -> None:
    if ("_onehop_tunnel_channel" in chan.__dict__ and chan._session is not None
            and chan._send_state == "open" and not chan._send_paused):
        chan._onehop_held = True
        chan._session.pause_writing()  # idempotent: a forwarder pauses its peer's reading


def _hold_while_connection_paused(chan: PrivateConn) -> None:
    """Wrap ``chan._pause_resume_writing`` (asyncssh resumes a channel's source once its
    own send buffer drains) so that the source stays paused while the connection is."""
    stock = chan._pause_resume_writing

    def pause_resume_writing() -> None:
        stock()
        conn = chan._conn
        if conn is not None and conn.__dict__.get("_onehop_writing_paused"):
            _hold(chan)

    chan._pause_resume_writing = pause_resume_writing


def pause_tunnel_channels_with_transport(conn: PrivateConn) -> None:
    """``hold_tunnel_channels`` and ``release_tunnel_channels`` on the transport's
    pause_writing and resume_writing, for one connection instance (the client's)."""
    pause, resume = conn.pause_writing, conn.resume_writing

    def pause_writing() -> None:
        pause()
        hold_tunnel_channels(conn)

    def resume_writing() -> None:
        resume()
        release_tunnel_channels(conn)

    conn.pause_writing, conn.resume_writing = pause_writing, resume_writing


# -- channel window ------------------------------------------------------------------------


#: The most bytes one buffered entry of a paused channel gathers from consecutive packets.
COALESCE_LIMIT = 64 * 1024
#: Seconds without data after which window due at the minimum goes back anyway.
STALL_GUARD = 0.02


def return_window_early(chan: asyncssh.SSHTCPChannel, after: int) -> None:
    """Make ``chan`` send WINDOW_ADJUST once ``after`` bytes, or a quarter of the smaller of
    the two windows if that is more, have reached its session.

    The peer's own window bounds what it may believe ours to be: Psiphon's Go code caps
    the window it believes it was granted at the size of its own (128 KiB by default), so
    ``after`` (below half of that) applies; a peer that opened with 8 MiB (onehop) or
    2 MiB (OpenSSH) gets window back every quarter of it, not on every read (each update
    is a packet and a send() on both sides). The peer's window is read when the first data
    arrives, from what is left of it then (never more than it was: a safe estimate). A peer
    that opened with a large window yet believes a small one would stall at that quarter:
    once ``after`` bytes are due, window goes back anyway if no more data has come within
    STALL_GUARD seconds.

    Replaces asyncssh's ``_deliver_data`` (whose own rule returns window at half of it, and
    also for bytes still waiting in its buffer while the session is paused, so a slow
    destination let a channel's buffer grow by a window at every resume). The adjust is
    sent once per event-loop turn, after every packet of the read that delivered the data
    (one WINDOW_ADJUST per read, not one per packet). Window is returned only for bytes
    handed to the session, so flow control holds at the channel's full window.
    """
    if chan._encoding is not None:
        raise ValueError("return_window_early is for byte channels")
    loop = asyncio.get_running_loop()
    pending = False
    threshold = 0  # set at the first delivery
    guard: asyncio.TimerHandle | None = None

    def return_window(minimum: int) -> None:
        nonlocal guard
        if chan._send_state in ("close_pending", "closed") or chan._conn is None:
            return
        # Bytes still queued in the channel were counted when they arrived but have not
        # reached the session: return only what has.
        consumed = chan._init_recv_window - chan._recv_window
        if consumed >= minimum:
            consumed -= sum(len(queued) for queued, _ in chan._recv_buf)
            if consumed >= minimum:
                chan.send_packet(MSG_CHANNEL_WINDOW_ADJUST, UInt32(consumed))
                chan._recv_window += consumed
                if guard is not None:
                    guard.cancel()
                    guard = None

    def send_adjust() -> None:
        nonlocal pending
        pending = False
        return_window(threshold)

    def guard_fired(received_then: int) -> None:
        nonlocal guard
        guard = None
        if chan._init_recv_window - chan._recv_window == received_then:  # nothing came since
            return_window(after)
        else:
            arm_guard()

    def arm_guard() -> None:
        nonlocal guard
        due = chan._init_recv_window - chan._recv_window
        guard = loop.call_later(STALL_GUARD, guard_fired, due)

    def deliver_returning_window(data, datatype):
        nonlocal pending, threshold
        if not threshold:
            threshold = max(after, min(chan._send_window, chan._init_recv_window) // 4)
        consumed = chan._init_recv_window - chan._recv_window
        if not pending and consumed >= threshold:
            pending = True
            loop.call_soon(send_adjust)
        elif guard is None and consumed >= after and threshold > after:
            arm_guard()
        if chan._session is not None:  # asyncssh's own delivery, without its window rule
            if type(data) is bytearray:  # coalesced while paused: the session gets bytes
                data = bytes(data)
            chan._session.data_received(data, datatype)

    def accept_data_coalescing(data, datatype=None):
        # asyncssh's _accept_data keeps one list entry per packet while the session is
        # paused (and pops them from the front): a full window of 2-byte packets cost
        # about 50 bytes of memory per byte of window, and quadratic time on resume.
        # Consecutive packets share an entry here, up to COALESCE_LIMIT bytes each.
        if not data or chan._send_state in ("close_pending", "closed"):
            return
        chan._recv_window -= len(data)
        if not chan._recv_paused:
            chan._deliver_data(data, datatype)
            return
        buf = chan._recv_buf
        if buf:
            last, last_type = buf[-1]
            if type(last) is bytearray and last_type == datatype and len(last) < COALESCE_LIMIT:
                last += data
                return
        buf.append((bytearray(data), datatype))

    chan._deliver_data = deliver_returning_window  # type: ignore[method-assign]  # (this module's purpose)
    # its data may skip asyncssh's dispatch (_receive_whole_gcm_packet), its source waits
    # while the connection's transport is full (hold_tunnel_channels)
    chan._onehop_tunnel_channel = True  # type: ignore[attr-defined]
    _hold_while_connection_paused(chan)
    chan._accept_data = accept_data_coalescing  # type: ignore[method-assign]  # (this module's purpose)
    quiet_packet_log(chan)


# -- keepalive timer -----------------------------------------------------------------------


def reset_keepalive_lazily(conn: PrivateConn, stock_reset: Callable[[], None]) -> None:
    """``_reset_keepalive_timer``: note the time of this read while the armed timer is due
    no later than a full interval from now; otherwise asyncssh's own reset."""
    timer = conn._keepalive_timer
    if timer is not None and conn._auth_complete and conn._keepalive_interval:
        now = conn._loop.time()
        if timer.when() <= now + conn._keepalive_interval:
            conn._onehop_input_at = now
            return
    stock_reset()


def keepalive_when_due(conn: PrivateConn, stock_callback: Callable[[], None]) -> None:
    """``_keepalive_timer_callback``: re-arm for the real deadline if input came since the
    timer was set; otherwise asyncssh's own (count a miss, send a keepalive request)."""
    due = conn.__dict__.get("_onehop_input_at", float("-inf")) + conn._keepalive_interval
    if conn._keepalive_interval and due > conn._loop.time():
        conn._keepalive_timer = conn._loop.call_at(due, conn._keepalive_timer_callback)
        return
    stock_callback()


class LazyKeepaliveTimer:
    """Mixin: received data moves the keepalive deadline without a new timer per read.

    asyncssh cancels its keepalive timer and schedules a new one (a TimerHandle, a heap
    push, and a cancelled entry left in the loop's heap) on every read once login is
    complete. Here a read only notes the time, and a timer that fires before the deadline
    re-arms for it: the keepalive goes out when asyncssh's own would, after
    ``keepalive_interval`` of silence.
    """

    def _reset_keepalive_timer(self) -> None:
        reset_keepalive_lazily(self, super()._reset_keepalive_timer)  # type: ignore[misc]

    def _keepalive_timer_callback(self) -> None:
        keepalive_when_due(self, super()._keepalive_timer_callback)  # type: ignore[misc]


def lazy_keepalive_timer(conn: PrivateConn) -> None:
    """``LazyKeepaliveTimer`` for one connection instance (the client's)."""
    stock_reset, stock_callback = conn._reset_keepalive_timer, conn._keepalive_timer_callback
    conn._reset_keepalive_timer = lambda: reset_keepalive_lazily(conn, stock_reset)
    conn._keepalive_timer_callback = lambda: keepalive_when_due(conn, stock_callback)


# -- packet logging ------------------------------------------------------------------------


def packet_logging_on() -> bool:
    """Whether asyncssh logs packets at all (``asyncssh.set_debug_level(3)``)."""
    return SSHLogger._debug_level >= 3


def quiet_packet_log(handler) -> None:
    """Skip asyncssh's per-packet log calls (they format a message for every packet even
    when nothing is logged) unless packet logging is on; for a connection or channel
    instance (the server's connection class overrides the same two methods instead)."""
    if packet_logging_on():
        return
    handler.log_received_packet = _no_packet_log
    handler.log_sent_packet = _no_packet_log


def _no_packet_log(pkttype, pktid, packet, note="") -> None:
    return None


class QuietPacketLog:
    """Mixin: no per-packet log calls while asyncssh's packet logging is off."""

    def log_received_packet(self, pkttype, pktid, packet, note="") -> None:
        if packet_logging_on():
            super().log_received_packet(pkttype, pktid, packet, note)  # type: ignore[misc]

    def log_sent_packet(self, pkttype, pktid, packet, note="") -> None:
        if packet_logging_on():
            super().log_sent_packet(pkttype, pktid, packet, note)  # type: ignore[misc]


# -- receive buffer ------------------------------------------------------------------------
#
# asyncssh keeps unparsed input in ``_inpbuf`` (bytes), appends each read to it and
# re-slices it for every packet header and packet: a 256 KiB read holding four 64 KiB
# packets is copied about five times before decryption starts. With AES-GCM keys in use
# ``receive`` keeps the buffer as a memoryview of the read instead, so those slices copy
# nothing; asyncssh's GCM decryption joins its pieces with ``bytes +``, which accepts a
# memoryview on the right. The header block (left operand of that join) is made bytes
# again by ``recv_header_as_bytes``. Any other cipher (ChaCha20-Poly1305 wants bytes,
# the version exchange wants ``find``) gets a bytes buffer back before its next packet.


def receive(conn: PrivateConn, data: bytes, data_received: Callable) -> None:
    """``conn.data_received(data)``; ``data_received`` is asyncssh's own (unbound)."""
    enc = conn._recv_encryption
    if not isinstance(enc, GCMEncryption):
        if type(conn._inpbuf) is memoryview:
            conn._inpbuf = conn._inpbuf.tobytes()
        data_received(conn, data)
        return
    if "decrypt_packet" not in enc.__dict__:
        _decrypt_in_place(conn, enc)
    if type(data) is not bytes:
        data = bytes(data)  # a view must not see its buffer change under it
    buf = conn._inpbuf
    if buf:
        # A packet begun in the last read: complete it alone (one packet's copy) and
        # process it before the rest of this read, instead of joining all of this read
        # onto it.
        need = conn.__dict__.pop("_onehop_partial_end", 0) - len(buf)
        if 0 < need < len(data):
            rest = memoryview(data)[need:]
            conn._inpbuf = memoryview(b"".join((buf, memoryview(data)[:need])))
            conn._onehop_packet_view = None
            conn._recv_data()
            if conn._transport is None:
                return  # that packet ended the connection: the rest of the read is not parsed
            buf = conn._inpbuf
            conn._inpbuf = memoryview(b"".join((buf, rest))) if buf else rest
        else:
            conn._inpbuf = memoryview(b"".join((buf, data)))
    else:
        conn._inpbuf = memoryview(data)
    conn._onehop_packet_view = None  # a packet begun in an earlier read is not in this one
    conn._recv_data()
    if not conn._inpbuf:
        conn._inpbuf = b""  # do not keep the last read alive through an empty view


def recv_header_as_bytes(conn: PrivateConn, recv_pkthdr: Callable) -> bool:
    """asyncssh's ``_recv_pkthdr`` (unbound, given) for a buffer that may be a memoryview.

    Under AES-GCM the packet at the front of the buffer is decrypted here once it is all
    there (``_receive_whole_gcm_packet``); until then it waits, header included.
    """
    whole = conn._inpbuf
    if type(whole) is memoryview:
        enc = conn._recv_encryption
        if not isinstance(enc, GCMEncryption):
            conn._inpbuf = whole = whole.tobytes()  # keys changed to a cipher that wants bytes
        else:
            handled = _receive_whole_gcm_packet(conn, enc, whole)
            if handled is not None:
                return handled
    parsed = recv_pkthdr(conn)
    if type(conn._packet) is memoryview:
        conn._packet = conn._packet.tobytes()
        if parsed:
            conn._onehop_packet_view = whole  # header, body and tag, contiguous from here
    return parsed


#: GCM: the 4-byte length (authenticated, not encrypted), at least one 16-byte block, the tag.
_GCM_LENGTH, _GCM_MIN_PACKET, _GCM_TAG = 4, 16, 16
#: Channel data: padding length, message type, recipient channel, data length.
_DATA_HEADER = 10
#: The smallest payload a session that ``accepts_views`` gets as a view rather than a copy.
#: A view costs about 184 bytes and keeps its whole decrypted packet alive until the relay's
#: flush: for a payload of a few bytes that is several times the bytes read, so a peer
#: sending minimal packets would make each read cost ~6.5x its size. Copying small payloads
#: is cheap; the copies worth saving are the bulk packets' (up to 64 KiB each).
VIEW_MIN_PAYLOAD = 1024


def _receive_whole_gcm_packet(conn: PrivateConn, enc: PrivateConn, buf: memoryview) -> bool | None:
    """Decrypt the packet at the front of ``buf``: True when done, False when it is not all
    there yet, None to leave it to asyncssh's header parsing (a length out of bounds, a
    failed tag: asyncssh reaches its own verdict and closes the connection its own way).

    A CHANNEL_DATA packet for a tunnel channel (one ``return_window_early`` tuned) that is
    well formed and within the window goes to the channel's ``_accept_data`` here, which is
    all asyncssh's _recv_packet, process_packet and _process_data would do with it after
    their checks, without the SSHPacket, the handler lookups, the log calls and two copies
    of the payload (three for a session that ``accepts_views``: it gets a memoryview of the
    decrypted packet instead of a sliced copy, for payloads of VIEW_MIN_PAYLOAD bytes or
    more). Any other packet is left to asyncssh's _recv_packet as if its header had just
    been read, with the plaintext waiting for ``decrypt_packet``.
    """
    size = len(buf)
    if size < _GCM_LENGTH:
        return False
    pktlen = int.from_bytes(buf[:_GCM_LENGTH], "big")
    if pktlen < _GCM_MIN_PACKET or pktlen > conn._max_recv_pktlen:
        return None
    end = _GCM_LENGTH + pktlen + _GCM_TAG
    if size < end:
        conn._onehop_partial_end = end  # for receive(): how much completes it
        return False
    if "decrypt_packet" not in enc.__dict__:
        _decrypt_in_place(conn, enc)  # keys changed in the middle of this read
    cipher = enc._cipher
    try:
        plain = enc._onehop_aesgcm.decrypt(cipher._iv, buf[_GCM_LENGTH:end], buf[:_GCM_LENGTH])
    except InvalidTag:
        return None
    cipher._update_iv()
    if (plain[1] == MSG_CHANNEL_DATA and conn._auth_complete and conn._decompressor is None
            and SSHLogger._debug_level < 3):  # packet logging on: asyncssh's path logs it
        datalen = int.from_bytes(plain[6:_DATA_HEADER], "big")
        padlen = plain[0]
        if padlen and _DATA_HEADER + datalen + padlen == len(plain):  # no padding: asyncssh refuses it
            chan = conn._channels.get(int.from_bytes(plain[2:6], "big"))
            if (chan is not None and "_onehop_tunnel_channel" in chan.__dict__
                    and chan._recv_state == "open" and datalen <= chan._recv_window):
                seq = conn._recv_seq
                conn._inpbuf = buf[end:]
                conn._auth_final = True
                if datalen >= VIEW_MIN_PAYLOAD and getattr(chan._session, "accepts_views", False):
                    # no copy: a view of the packet
                    chan._accept_data(memoryview(plain)[_DATA_HEADER:_DATA_HEADER + datalen])
                else:
                    chan._accept_data(plain[_DATA_HEADER:_DATA_HEADER + datalen])
                if conn._transport:
                    conn._recv_seq = (seq + 1) & 0xffffffff
                return True
    # where asyncssh's _recv_pkthdr would have left things; its _recv_packet goes on from here
    blocksize = conn._recv_blocksize
    conn._packet = buf[:blocksize].tobytes()
    conn._pktlen = pktlen
    conn._inpbuf = buf[blocksize:]
    conn._onehop_plaintext = plain
    conn._recv_handler = conn._recv_packet
    return True


def _decrypt_in_place(conn: PrivateConn, enc: PrivateConn) -> None:
    """Give ``enc`` a decrypt_packet that reads the packet where it lies in the read.

    asyncssh's joins the header block, the body and the tag into new bytes (two copies)
    and builds a new AESGCM object per packet. When the whole packet is in the current
    read, its ciphertext and tag are one contiguous slice of it: decrypt that slice with
    an AESGCM kept for this key. Otherwise (a packet spread over reads) asyncssh's own.
    """
    cipher = enc._cipher
    aesgcm = enc._onehop_aesgcm = AESGCM(cipher._key)
    stock = enc.decrypt_packet

    def decrypt_packet(seq, first, rest, header_len, mac):
        plain = conn.__dict__.pop("_onehop_plaintext", None)
        if plain is not None:  # decrypted already by _receive_whole_gcm_packet
            return plain
        whole = conn._onehop_packet_view
        conn._onehop_packet_view = None
        end = len(first) + len(rest) + len(mac)
        if whole is None or len(whole) < end:
            return stock(seq, first, rest, header_len, mac)
        try:
            plain = aesgcm.decrypt(cipher._iv, whole[header_len:end], first[:header_len])
        except InvalidTag:
            plain = None
        cipher._update_iv()
        return plain

    enc.decrypt_packet = decrypt_packet  # (this module's purpose)


class ZeroCopyReceive:
    """Mixin for a connection class: ``receive`` and ``recv_header_as_bytes`` in place."""

    def data_received(self, data: bytes, datatype=None) -> None:
        receive(self, data, SSHConnection.data_received)

    def _recv_pkthdr(self) -> bool:
        return recv_header_as_bytes(self, SSHConnection._recv_pkthdr)


def zero_copy_receive(conn: PrivateConn) -> None:
    """``ZeroCopyReceive`` for one connection instance (the client's)."""
    def data_received(data, datatype=None):
        receive(conn, data, SSHConnection.data_received)

    def recv_pkthdr():
        return recv_header_as_bytes(conn, SSHConnection._recv_pkthdr)

    conn.data_received = data_received
    conn._recv_pkthdr = recv_pkthdr


# -- sending channel data ------------------------------------------------------------------
#
# asyncssh's send_packet copies a data packet's bytes about seven times (payload, padding,
# ciphertext and tag split and joined again) and builds a new AESGCM object for each. For
# channel data and window updates under AES-GCM, once keys and login are complete and no rekey is due, this
# builds the same packet with one join, one encryption and one header join, with an
# AESGCM object kept per key. Everything else goes through asyncssh's own send_packet.


#: What send_data_fast sends: a tunnel's bulk data and the window updates that pace it.
_FAST_TYPES = frozenset((MSG_CHANNEL_DATA, MSG_CHANNEL_WINDOW_ADJUST))


def _gcm_sending(conn: PrivateConn) -> tuple[Any, AESGCM] | None:
    """(asyncssh's GCM cipher, an AESGCM kept for its key) when ``conn`` may send packets
    past asyncssh: AES-GCM keys in use, login complete, no compression, no rekey due by
    time. None otherwise. (Rekeying by bytes is each caller's check: they differ.)"""
    enc = conn._send_encryption
    if (type(enc) is not GCMEncryption or not conn._kex_complete or not conn._auth_complete
            or conn._compressor is not None or (conn._rekey_seconds and time.monotonic() >= conn._rekey_time)):
        return None
    cipher = enc._cipher
    cached = conn.__dict__.get("_onehop_gcm")
    if cached is None or cached[0] is not cipher:
        cached = conn._onehop_gcm = (cipher, AESGCM(cipher._key))
    return cached


def _padding_length(conn: PrivateConn, payload_len: int) -> int:
    """asyncssh's padding for a payload: to the cipher's block, and at least 4 bytes."""
    padlen = -(conn._send_enchdrlen + payload_len) % conn._send_blocksize
    return padlen + conn._send_blocksize if padlen < 4 else padlen


def send_data_fast(conn: PrivateConn, pkttype: int, args: tuple, handler) -> bool:
    """Send a CHANNEL_DATA or CHANNEL_WINDOW_ADJUST packet the cheap way; False (nothing
    sent) when not eligible."""
    if pkttype not in _FAST_TYPES or conn._rekey_bytes_sent >= conn._rekey_bytes:
        return False
    sending = _gcm_sending(conn)
    if sending is None:
        return False
    cipher, aesgcm = sending
    payload_len = 1 + sum(map(len, args))
    padlen = _padding_length(conn, payload_len)
    pktlen = 1 + payload_len + padlen
    header = pktlen.to_bytes(4, "big")
    plain = b"".join((bytes((padlen, pkttype)), *args, os.urandom(padlen)))
    sealed = aesgcm.encrypt(cipher._iv, plain, header)  # ciphertext and tag
    cipher._update_iv()
    seq = conn._send_seq
    conn._send(header + sealed)
    conn._send_seq = (seq + 1) & 0xffffffff
    conn._rekey_bytes_sent += pktlen
    if packet_logging_on():
        (handler or conn).log_sent_packet(pkttype, seq, plain[1:1 + payload_len])
    return True


# -- writing channel data --------------------------------------------------------------------
#
# asyncssh's SSHChannel.write copies what it is given into a bytearray, slices a packet's
# worth off it (a copy), wraps it as an SSH string (a copy), and send_data_fast then joins
# the plaintext (a copy) and the header onto the ciphertext (a copy); the transport joins
# the packets of a loop turn (a copy). ``write_in_batches`` builds every packet the window
# allows for one write straight into one buffer: the plaintext of each packet is joined
# once from a view of the data, and encrypted into its place in the buffer.


def write_in_batches(chan: asyncssh.SSHTCPChannel) -> None:
    """Give ``chan`` a write that sends what the window takes as one batch of packets."""
    stock_write = chan.write

    def write(data, datatype=None):
        conn = chan._conn
        if conn is not None and conn.__dict__.get("_onehop_writing_paused"):
            _hold(chan)  # opened, or resumed by its own buffer, while the connection is full
        if datatype is None and not chan._send_buf and chan._send_state == "open":
            sent = _send_data_batch(chan, data)
            if sent:
                if sent == len(data):
                    return
                data = memoryview(data)[sent:]  # beyond the window: asyncssh buffers it
        stock_write(data, datatype)

    chan.write = write  # type: ignore[method-assign]  # (this module's purpose)


#: AESGCM.encrypt_into came with cryptography 47; older releases take asyncssh's write path.
CAN_ENCRYPT_INTO = hasattr(AESGCM, "encrypt_into")
#: Bytes of a CHANNEL_DATA packet's payload before the data: type, recipient, data length.
_DATA_PAYLOAD_HEADER = 9
_MAX_PADDING = 4 + 15  # at least 4, up to one cipher block more


def _send_data_batch(chan: PrivateConn, data: bytes) -> int:
    """Send as much of ``data`` as the channel's window allows as CHANNEL_DATA packets under
    AES-GCM, in one write to the transport; the bytes sent (0: not eligible, nothing sent)."""
    conn = chan._conn
    if conn is None or chan._send_window <= 0 or not data or not CAN_ENCRYPT_INTO or packet_logging_on():
        return 0
    sending = _gcm_sending(conn)
    if sending is None:
        return 0
    n = min(len(data), chan._send_window)
    pktsize = chan._send_pktsize
    count = -(-n // pktsize)
    if conn._rekey_bytes_sent + n + count * (_DATA_PAYLOAD_HEADER + 1 + _MAX_PADDING) >= conn._rekey_bytes:
        return 0  # a rekey falls due in this batch: asyncssh's own path starts it
    cipher, aesgcm = sending
    layout = []
    total = 0
    for start in range(0, n, pktsize):
        size = min(pktsize, n - start)
        payload_len = _DATA_PAYLOAD_HEADER + size
        padlen = _padding_length(conn, payload_len)
        pktlen = 1 + payload_len + padlen
        layout.append((start, size, padlen, pktlen))
        total += _GCM_LENGTH + pktlen + _GCM_TAG
    out = OwnedBuffer(total)
    view, source = memoryview(out), memoryview(data)
    recipient = UInt32(chan._send_chan)
    padding = os.urandom(count * _MAX_PADDING)
    pos = 0
    for i, (start, size, padlen, pktlen) in enumerate(layout):
        header = pktlen.to_bytes(4, "big")
        view[pos:pos + _GCM_LENGTH] = header
        plain = b"".join((bytes((padlen, MSG_CHANNEL_DATA)), recipient, size.to_bytes(4, "big"),
                          source[start:start + size], padding[i * _MAX_PADDING:i * _MAX_PADDING + padlen]))
        end = pos + _GCM_LENGTH + pktlen + _GCM_TAG
        aesgcm.encrypt_into(cipher._iv, plain, header, view[pos + _GCM_LENGTH:end])
        cipher._update_iv()
        pos = end
        conn._rekey_bytes_sent += pktlen
    conn._send_seq = (conn._send_seq + count) & 0xffffffff
    chan._send_window -= n
    conn._send(out)
    return n
