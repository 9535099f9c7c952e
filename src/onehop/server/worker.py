"""One worker process of a multi-process server: ``python -m onehop.server.worker``.

Started by :mod:`.workers` (never by hand). It runs an ordinary :class:`TunnelServer`
with its share of the handshake caps, accepting on the listening sockets and recording
seeds in the shared replay history it inherited as descriptors. Events go to the log
file, or as JSON lines to stdout (a pipe the supervisor copies to its stderr); each
carries ``worker_id``. SIGTERM or SIGINT stops it cleanly, SIGHUP reloads changed
files. Its stdin is a socket to the supervisor: it writes ``ready`` there once it
serves and then a heartbeat byte every few seconds from its event loop (a worker whose loop
is stuck goes silent, and the supervisor kills it). The end of stdin means the supervisor is
gone (killed: a clean stop would have signalled first), and the worker ends at once, as one
process killed would have; on Linux the kernel also kills it then (PR_SET_PDEATHSIG), which
reaches a worker that is stopped or hung too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys

from ..errors import ConfigError
from ..net.bulkreads import keep_read_buffers_in_heap
from ..stopsignals import stop_event
from .config import load_server_config
from .service import TunnelServer
from .sharedhistory import SharedSeedHistory
from .workers import HEARTBEAT, READY, worker_config

log = logging.getLogger("onehop.server.worker")  # also when run as __main__


def _listen_arg(text: str) -> tuple[str, int]:
    protocol, _, fd = text.partition("=")
    return protocol, int(fd)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m onehop.server.worker",
                                description="one worker of `onehop server run --workers N` (started by it)")
    p.add_argument("--config", required=True)
    p.add_argument("--worker-id", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--seed-history-fd", type=int, required=True)
    p.add_argument("--listen", type=_listen_arg, action="append", default=[], help="PROTOCOL=FD")
    p.add_argument("--log-level", default="WARNING")
    p.add_argument("--quiet", action="store_true", help="no events on stdout")
    p.add_argument("--supervisor-pid", type=int, default=0,
                   help="the supervisor: a worker that finds it gone as it starts ends at once")
    p.add_argument("--heartbeat-interval", type=float, default=0.0,
                   help="seconds between heartbeats, as the supervisor's timeout asks (0: none)")
    return p.parse_args(argv)


def _on_stdin() -> None:
    try:
        data = os.read(0, 4096)
    except (BlockingIOError, InterruptedError):  # stdin is non-blocking: nothing after all
        return
    except OSError:
        data = b""
    if not data:  # the supervisor was killed: so is the server, this worker included
        os._exit(1)


def _tell_supervisor(what: bytes) -> None:
    try:
        os.write(0, what)
    except BlockingIOError:  # the supervisor is behind with its reading: the next one will do
        pass
    except OSError:
        os._exit(1)  # the supervisor is gone


def _beat_every(loop: asyncio.AbstractEventLoop, seconds: float) -> None:
    _tell_supervisor(HEARTBEAT)
    loop.call_later(seconds, _beat_every, loop, seconds)


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; elsewhere the end
    of stdin does it, once the process runs again). The kernel watches only a parent still
    alive when this is called, half a second or so into the worker's start: if ``parent``
    (not 0) is already gone, the worker ends here rather than start (for minutes, perhaps)
    with nobody to serve for, holding the listening ports."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass
    if parent and os.getppid() != parent:
        os._exit(1)


async def serve(server: TunnelServer, heartbeat: float) -> None:
    """Serve until SIGTERM or SIGINT, with a heartbeat every ``heartbeat`` seconds (0: none)."""
    await server.start()
    loop = asyncio.get_running_loop()

    def reload() -> None:
        log.info("SIGHUP: reloading changed files")
        server.reload_files()
    stop = stop_event(on_reload=reload)
    os.set_blocking(0, False)  # a supervisor that does not read must not block this worker
    loop.add_reader(0, _on_stdin)
    _tell_supervisor(READY)  # stdin is a socket to the supervisor: now it may count on us
    if heartbeat > 0:
        loop.call_soon(_beat_every, loop, heartbeat)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(0)
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    die_with_parent(args.supervisor_pid)
    level = getattr(logging, str(args.log_level).upper(), logging.WARNING)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s worker {args.worker_id} %(name)s: %(message)s")
    try:
        config = worker_config(load_server_config(args.config), args.workers)
    except ConfigError as exc:  # server.json changed under a running server
        print(f"onehop server worker {args.worker_id}: {exc}", file=sys.stderr)
        return 2
    keep_read_buffers_in_heap()
    server = TunnelServer(config, event_stream=None if args.quiet else sys.stdout)
    server.listen_sockets = {protocol: socket.socket(fileno=fd) for protocol, fd in args.listen}
    server.seed_history = SharedSeedHistory(args.seed_history_fd)
    server.events.fields["worker_id"] = args.worker_id
    asyncio.run(serve(server, args.heartbeat_interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
