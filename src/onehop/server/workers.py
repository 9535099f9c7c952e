"""A server that uses every core: one supervisor, N worker processes (the supervisor's side).

``onehop server run`` with more than one worker (``--workers``, or ``Workers`` in
server.json; default one per core) runs this supervisor. It owns what must be one per
server and hands it to each worker (``python -m onehop.server.worker``) as descriptors:

* the listening sockets: bound once, here, and inherited by every worker, which accepts
  on them with its own accept gate. The kernel hands each connection to one worker;
  a worker at its handshake cap simply stops accepting and the others take the
  connections; a worker that dies leaves the backlog to the others (a worker's own
  SO_REUSEPORT socket would take its queued connections down with it), and bind errors
  and port 0 are dealt with once, before any worker exists;
* the seed-replay history (:mod:`.sharedhistory`): a replay is refused, silently, by
  whichever worker accepts it;
* the event stream: with no LogFilename each worker writes its events to a pipe of its
  own and the supervisor copies whole lines to stderr (with LogFilename each worker
  appends whole lines to the file itself, one O_APPEND write per line). Every event
  carries the ``worker_id`` of the worker that wrote it.

Per worker, the handshake caps and the key-derivation processes are the configured
(or default) totals divided by the number of workers, so the totals still hold. (The
kernel does not spread one source's connections evenly, so a source may meet one
worker's share of its cap before the whole: the cap errs on the strict side.)
Signals: SIGTERM and SIGINT stop every worker (SIGKILL after ``STOP_GRACE`` seconds),
SIGHUP is passed to every worker (each reloads its changed files). A worker that exits
on its own is restarted, after a delay that doubles while it keeps dying young; it reads
server.json again (its ports and the shared state stay those the supervisor holds). A
worker that is alive but hung (its event loop stuck, or stopped) would hold its tunnels
frozen and never come back: each worker's event loop writes a heartbeat byte to the
supervisor, and one silent for ``WorkerHeartbeatTimeoutSeconds`` (60; 0 turns the watch
off; a starting worker gets STARTUP_ALLOWANCE at least) is killed and so restarted, and its
clients reconnect to the others.
Workers run in their own session (a terminal's Ctrl-C reaches the supervisor only) and
end at once when their stdin, a socket to the supervisor (on which they also say they
are ready), closes: a supervisor killed (SIGKILL) takes its workers with it, as a
single-process server is killed whole.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import signal
import socket
import sys
from typing import TextIO
from collections.abc import Callable

from ..errors import ConfigError, ConfigProblem
from ..stopsignals import on_reload_signal, on_stop_signals, remove_handlers
from ..net.acceptgate import default_caps, listening_socket
from .config import ServerConfig
from .service import listen_problem
from .sharedhistory import SharedSeedHistory

log = logging.getLogger(__name__)

#: Restart delays: the first after a worker that ran STABLE_AFTER seconds, doubling up to the last.
MIN_RESTART_DELAY, MAX_RESTART_DELAY = 0.1, 30.0
STABLE_AFTER = 60.0
#: Seconds the workers get to stop after SIGTERM before they are killed.
STOP_GRACE = 20.0
#: The longest event line copied from a worker (longer ones are dropped, with a log line).
MAX_EVENT_LINE = 16 << 20
#: What a worker writes on its stdin socket once it serves, and then every heartbeat_interval().
READY = b"ready"
HEARTBEAT = b"."
#: The longest gap between heartbeats (shorter when the timeout is short).
HEARTBEAT_INTERVAL = 5.0


#: The least a starting worker is given to say "ready": loading a large psinet database or
#: GeoIP files on a slow disk must not make every start end in a kill.
STARTUP_ALLOWANCE = 300.0


def allowed_silence(timeout: float, ready: bool) -> float:
    """Seconds a worker may stay silent before it counts as hung."""
    return timeout if ready else max(timeout, STARTUP_ALLOWANCE)


def heartbeat_interval(timeout: float) -> float:
    """Seconds between a worker's heartbeats for a supervisor that waits ``timeout``."""
    return min(HEARTBEAT_INTERVAL, timeout / 4)


def worker_config(config: ServerConfig, workers: int) -> ServerConfig:
    """One worker's share: handshake caps and key-derivation processes divided by
    ``workers`` (the caps rounded down, so the totals hold; at least 1 each)."""
    total, per_source = default_caps()
    return dataclasses.replace(
        config,
        max_concurrent_handshakes=max(1, (config.max_concurrent_handshakes or total) // workers),
        max_concurrent_handshakes_per_source=max(
            1, (config.max_concurrent_handshakes_per_source or per_source) // workers),
        ossh_key_workers=math.ceil(config.ossh_key_workers / workers),
    )


def bind_listeners(config: ServerConfig) -> dict[str, socket.socket]:
    """protocol -> listening socket, for the workers to share; ConfigError if one cannot be bound."""
    host, ports = config.listen_ip_address, config.tunnel_protocol_ports
    sockets: dict[str, socket.socket] = {}
    try:
        for protocol, port in ports.items():
            sockets[protocol] = listening_socket(host, port)
    except OSError as exc:
        for sock in sockets.values():
            sock.close()
        raise ConfigError([ConfigProblem("TunnelProtocolPorts", listen_problem(host, ports, exc))]) from None
    return sockets


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class _Worker:
    """One running worker process and its control socket (its stdin)."""

    def __init__(self, process: asyncio.subprocess.Process, control: socket.socket) -> None:
        self.process, self.control = process, control
        self.ready = asyncio.Event()
        self.hup_pending = False
        self.heard = asyncio.get_running_loop().time()  # last word from it (started: its first)

    def signal(self, sig: signal.Signals) -> None:
        if self.process.returncode is None:
            try:
                self.process.send_signal(sig)
            except ProcessLookupError:
                pass


def _has_spoken(control: socket.socket) -> bool:
    """Whether bytes from the worker wait unread (left for ``_listen`` to read)."""
    try:
        return bool(control.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:  # nothing waiting (EAGAIN), or the socket is gone
        return False


class Supervisor:
    """Starts, watches, restarts and stops the worker processes of one server."""

    def __init__(self, config_path: str, config: ServerConfig, workers: int, *,
                 event_stream: TextIO | None = None, log_level: str = "WARNING") -> None:
        """``event_stream``: where the workers' events go when the config names no LogFilename."""
        self.config_path, self.config, self.workers = config_path, config, workers
        self.event_stream = event_stream
        self.log_level = log_level
        self.running: dict[int, _Worker] = {}
        self.restarts = 0
        self.sockets: dict[str, socket.socket] = {}
        self.history: SharedSeedHistory | None = None
        self._stop = asyncio.Event()

    def start_line(self) -> str:
        cfg = self.config
        names = {"OSSH": "OSSH (with and without prefix)", "SSH": "SSH"}
        listening = ", ".join(f"{names[p]} on {cfg.listen_ip_address}:{sock.getsockname()[1]}"
                              for p, sock in self.sockets.items())
        events = (cfg.path(cfg.log_filename) if cfg.log_filename else
                  "stderr (JSON lines)" if self.event_stream is not None else "nowhere (no LogFilename)")
        return (f"onehop server: serving {listening}; events to {events}; "
                f"{self.workers} worker processes; SIGTERM stops it")

    def _command(self, worker_id: int) -> list[str]:
        assert self.history is not None
        command = [sys.executable, "-m", "onehop.server.worker", "--config", self.config_path,
                   "--worker-id", str(worker_id), "--workers", str(self.workers),
                   "--seed-history-fd", str(self.history.fd), "--log-level", self.log_level]
        # this supervisor's timeout, not the one a restarted worker reads from a server.json
        # edited since: heartbeats too sparse for it (or none) would get every restart killed
        timeout = self.config.worker_heartbeat_timeout
        command += ["--heartbeat-interval", str(heartbeat_interval(timeout) if timeout > 0 else 0)]
        command += ["--supervisor-pid", str(os.getpid())]
        for protocol, sock in self.sockets.items():
            command += ["--listen", f"{protocol}={sock.fileno()}"]
        if self.event_stream is None:
            command.append("--quiet")
        return command

    async def _spawn(self, worker_id: int) -> _Worker:
        """The worker's stdin is one end of a socket pair: it says "ready" on it, and its
        end of file tells the worker that the supervisor is gone."""
        assert self.history is not None
        fds = (self.history.fd, *(sock.fileno() for sock in self.sockets.values()))
        control, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command(worker_id), stdin=theirs.fileno(), stdout=asyncio.subprocess.PIPE,
                pass_fds=fds, start_new_session=True, limit=MAX_EVENT_LINE)
        except BaseException:
            control.close()
            raise
        finally:
            theirs.close()
        control.setblocking(False)
        return _Worker(process, control)

    async def _relay(self, worker_id: int, stdout: asyncio.StreamReader) -> None:
        """Copy a worker's event lines, each whole, to the event stream."""
        while True:
            try:
                line = await stdout.readline()
            except ValueError:  # longer than MAX_EVENT_LINE: its rest is dropped too
                log.warning("worker %d: dropped an event line over %d bytes", worker_id, MAX_EVENT_LINE)
                continue
            if not line:
                return
            if self.event_stream is not None and line.endswith(b"\n"):
                try:
                    self.event_stream.write(line.decode("utf-8", errors="replace"))
                    self.event_stream.flush()
                except (OSError, ValueError):  # stderr is gone (its reader exited): events too,
                    # but the lines are still read, so no worker blocks on a full pipe, and this
                    # slot still restarts its worker (an exception here would end it)
                    self.event_stream = None
                    log.error("worker events can no longer be written to stderr: dropping them")

    async def _listen(self, worker: _Worker) -> None:
        """Its "ready", then its heartbeats, until its end of the control socket closes."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                said = await loop.sock_recv(worker.control, 4096)
            except OSError:
                return
            if not said:
                return
            worker.heard = loop.time()
            if not worker.ready.is_set() and READY in said:
                worker.ready.set()
                if worker.hup_pending:  # a SIGHUP came while it was starting
                    worker.signal(signal.SIGHUP)

    async def _watch(self, worker_id: int, worker: _Worker) -> None:
        """Kill the worker once it has been silent for the heartbeat timeout (it is then
        restarted like any worker that died). Starting counts too, with STARTUP_ALLOWANCE at
        least: a worker that never says "ready" is killed and started again."""
        timeout = self.config.worker_heartbeat_timeout
        if timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        while worker.process.returncode is None and not self._stop.is_set():
            allowed = allowed_silence(timeout, worker.ready.is_set())
            silent = loop.time() - worker.heard
            if silent > allowed and _has_spoken(worker.control):
                worker.heard = loop.time()  # heartbeats wait unread: this supervisor was the slow one
                silent = 0.0
            if silent > allowed:
                log.warning("worker %d (pid %d) has sent no heartbeat for %.0f s (hung or stopped): killing it",
                            worker_id, worker.process.pid, silent)
                worker.signal(signal.SIGKILL)
                return
            pause = min(1.0, allowed - silent + 0.05)
            due = loop.time() + pause
            await asyncio.sleep(pause)
            if loop.time() - due > heartbeat_interval(timeout):
                # this supervisor did not run meanwhile (stopped; or frozen with its workers,
                # a cgroup freezer, so that no heartbeat waits unread and the workers may not
                # have run yet since the thaw): its absence is not the worker's silence
                worker.heard = loop.time()

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    async def _keep_running(self, worker_id: int) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.0
        while not self._stop.is_set():
            started = loop.time()
            try:
                worker = await self._spawn(worker_id)
            except OSError as exc:  # out of processes or memory: try again later
                delay = min(MAX_RESTART_DELAY, max(MIN_RESTART_DELAY, delay * 2))
                log.warning("worker %d could not be started (%s); trying again in %.1f s",
                            worker_id, exc.strerror or exc, delay)
                await self._sleep_unless_stopped(delay)
                continue
            self.running[worker_id] = worker
            if self._stop.is_set():  # stopping began while it was being started
                worker.signal(signal.SIGTERM)
            assert worker.process.stdout is not None
            relay = loop.create_task(self._relay(worker_id, worker.process.stdout))
            listen = loop.create_task(self._listen(worker))
            watch = loop.create_task(self._watch(worker_id, worker))
            log.info("worker %d started (pid %d)", worker_id, worker.process.pid)
            returncode = await worker.process.wait()
            await relay
            listen.cancel()
            watch.cancel()
            worker.control.close()
            del self.running[worker_id]
            if self._stop.is_set():
                return
            delay = (MIN_RESTART_DELAY if loop.time() - started >= STABLE_AFTER
                     else min(MAX_RESTART_DELAY, max(MIN_RESTART_DELAY, delay * 2)))
            log.warning("worker %d (pid %d) %s; restarting it in %.1f s",
                        worker_id, worker.process.pid, describe_exit(returncode), delay)
            self.restarts += 1
            await self._sleep_unless_stopped(delay)

    def reload(self) -> None:
        """SIGHUP to every worker; one still starting gets it once it is ready."""
        log.warning("SIGHUP: %d worker(s) reload their changed files", len(self.running))
        for worker in list(self.running.values()):
            if worker.ready.is_set():
                worker.signal(signal.SIGHUP)
            else:
                worker.hup_pending = True

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            for worker in list(self.running.values()):
                worker.signal(signal.SIGTERM)

    def all_ready(self) -> bool:
        return len(self.running) == self.workers and all(w.ready.is_set() for w in self.running.values())

    async def _announce_when_ready(self, on_started: Callable[[], None]) -> None:
        while not self.all_ready():  # polled: a worker may die and be replaced before it is ready
            await asyncio.sleep(0.05)
        on_started()

    async def run(self, on_started: Callable[[], None] | None = None) -> None:
        """Bind, start the workers, and serve until SIGTERM or SIGINT; ConfigError if a port
        cannot be bound. ``on_started`` is called once the first workers are all serving."""
        self.sockets = bind_listeners(self.config)
        self.history = SharedSeedHistory.create()
        loop = asyncio.get_running_loop()
        on_stop_signals(self.stop)
        on_reload_signal(self.reload)
        slots = [loop.create_task(self._keep_running(i)) for i in range(self.workers)]
        announce = loop.create_task(self._announce_when_ready(on_started or (lambda: None)))
        try:
            await self._stop.wait()
            announce.cancel()
            done, pending = await asyncio.wait(slots, timeout=STOP_GRACE)
            if pending:
                log.warning("%d worker(s) still running %g s after SIGTERM: killing them", len(pending), STOP_GRACE)
                for worker in list(self.running.values()):
                    worker.signal(signal.SIGKILL)
                await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                task.result()  # a supervisor bug surfaces here, not silently
        finally:
            remove_handlers()
            for task in (*slots, announce):
                task.cancel()
            for worker in list(self.running.values()):  # only if something above failed: no orphans
                worker.signal(signal.SIGKILL)
            for sock in self.sockets.values():
                sock.close()
            self.history.close()
