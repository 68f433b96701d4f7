"""A worker process: accept, park idle connections in a selector, answer requests one at a time."""

from __future__ import annotations

import errno
import logging
import os
import selectors
import signal
import socket
import struct
import time
from typing import Any

from apd import checks as check_registry
from apd.decision_log import DecisionWriter, decision_writer
from apd.policy import Policy, describe
from apd.protocol import PolicyRequest, RequestReader, lacks_protocol_state
from apd.server import IDLE_TIMEOUT, Connection
from apd.store import open_store

log = logging.getLogger(__name__)

STOP_GRACE = 10.0  # seconds a stopping worker waits for half-received requests
FRESH_GRACE = 1.0  # ... and for the first request of a connection it accepted just before
TICK = 1.0
STOP_TICK = 0.1
LOG_FLUSH_INTERVAL = 0.1  # the longest a decision line waits in memory
ACCEPT_PAUSE = 0.5
# Every idle worker wakes for a new client; each taking one spreads a burst (200 Postfix smtpd
# reconnecting at once) over all workers. Taking 64 let one worker own most connections and
# serve them on one core while the others idled (bench: 134 of 200 on one worker).
ACCEPT_PER_WAKEUP = 1
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


class Worker:
    def __init__(
        self, listeners: list[Any], settings: Any, planned: list[Any], generation: int, ready_fd: int | None = None
    ):
        self.listeners = listeners
        self.settings = settings
        self.planned = planned
        self.generation = generation
        self.ready_fd = ready_fd  # our pid written here: "accepting" at first, then a heartbeat each TICK
        self.stopping = False
        self.accept_paused_until = 0.0  # out of descriptors: accepting resumes at this moment
        self.parent = os.getppid()
        self.selector = selectors.DefaultSelector()
        self.connections: dict[int, Connection] = {}
        self.decisions: DecisionWriter | None = None  # the INFO line per decision, see apd/decision_log.py

    def run(self) -> int:
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)  # the master blocked them across fork
        store = open_store(self.settings)
        checks = check_registry.instantiate(self.planned, self.settings, store)
        self.policy = Policy(checks, self.settings, store)
        self.decisions = decision_writer(log)
        self.selector.register(wake_r, selectors.EVENT_READ, "wake")
        for listener in self.listeners:
            self.selector.register(listener.socket, selectors.EVENT_READ, listener)
        self._heartbeat()
        try:
            self._loop(wake_r)
        finally:
            if self.decisions is not None:
                self.decisions.flush()
            for conn in list(self.connections.values()):
                conn.close()
            for check in checks:
                check.close()
            store.close()
        return 0

    def _heartbeat(self) -> None:
        """Tell the master we are ready and not stuck (it kills a worker silent for worker_timeout)."""
        if self.ready_fd is None:
            return
        try:
            os.write(self.ready_fd, struct.pack("=i", os.getpid()))
        except BlockingIOError:
            pass  # the master is busy; the next beat will do
        except OSError as exc:
            log.warning("cannot report to the master: %s", exc)
            self.ready_fd = None

    def _on_stop(self, signum: int, frame: Any) -> None:
        self.stopping = True  # only a flag: no logging or I/O in a signal handler

    def _loop(self, wake: socket.socket) -> None:
        stop_started = None
        last_sweep = flushed_at = time.monotonic()
        while True:
            if self.stopping:
                if stop_started is None:
                    stop_started = time.monotonic()
                    self._begin_stop()
                self._drop_when_stopping(time.monotonic() - stop_started)
                if not self.connections:
                    return
            elif self.accept_paused_until and time.monotonic() >= self.accept_paused_until:
                self._resume_accepting()
            timeout = TICK
            if self.stopping or self.accept_paused_until:
                timeout = STOP_TICK
            elif self.decisions is not None and self.decisions.holding():
                timeout = LOG_FLUSH_INTERVAL  # held decision lines wait no longer than this
            events = self.selector.select(timeout)
            for key, _ in events:
                target = key.data
                if target == "wake":
                    try:
                        wake.recv(512)
                    except BlockingIOError:
                        pass
                elif isinstance(target, Connection):
                    self._serve(target)
                else:
                    self._accept(target)
            now = time.monotonic()
            if self.decisions is not None and (not events or now - flushed_at >= LOG_FLUSH_INTERVAL):
                # Decision lines go out when the loop goes idle, and while it is busy every
                # LOG_FLUSH_INTERVAL (or MAX_PENDING lines): one write for many lines.
                self.decisions.flush()
                flushed_at = now
            if now - last_sweep >= TICK:
                last_sweep = now
                self._heartbeat()
                if os.getppid() != self.parent:
                    log.error("master went away; worker %d exits", os.getpid())
                    return
                self._close_idle(now)

    def _begin_stop(self) -> None:
        """Stop accepting (the master and other workers keep the socket) and answer what has arrived."""
        if self.accept_paused_until:
            self._resume_accepting()
        for listener in self.listeners:
            self.selector.unregister(listener.socket)
            listener.socket.close()
        for conn in list(self.connections.values()):
            self._serve(conn)

    def _drop_when_stopping(self, elapsed: float) -> None:
        """Idle persistent connections go now (Postfix reconnects); a half-received request is
        awaited up to STOP_GRACE, the first request of a just-accepted connection up to FRESH_GRACE."""
        for conn in list(self.connections.values()):
            if elapsed > STOP_GRACE:
                self._drop(conn)
            elif not conn.reader.in_request and (conn.answered or elapsed > FRESH_GRACE):
                self._drop(conn)

    def _accept(self, listener: Any) -> None:
        for _ in range(ACCEPT_PER_WAKEUP):
            try:
                sock, peer = listener.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The listener stays readable: without a pause this would spin and flood the log.
                    if not self.accept_paused_until:
                        log.warning("accept failed: %s; not accepting for %.1f s", exc, ACCEPT_PAUSE)
                    self._pause_accepting()
                else:
                    log.warning("accept failed: %s", exc)
                return
            reader = RequestReader(delimiters=tuple(self.settings.RECIPIENT_DELIMITERS))
            conn = Connection(sock, peer, reader, time.monotonic())
            self.connections[conn.fileno()] = conn
            self.selector.register(sock, selectors.EVENT_READ, conn)

    def _pause_accepting(self) -> None:
        if self.accept_paused_until:
            return
        for listener in self.listeners:
            self.selector.unregister(listener.socket)
        self.accept_paused_until = time.monotonic() + ACCEPT_PAUSE

    def _resume_accepting(self) -> None:
        for listener in self.listeners:
            self.selector.register(listener.socket, selectors.EVENT_READ, listener)
        self.accept_paused_until = 0.0

    def _serve(self, conn: Connection) -> None:
        try:
            keep = conn.serve_ready(self._answer, time.monotonic())
        except Exception:  # a bug outside the checks: lose this connection, not the worker's others
            log.exception("connection from %s closed: unexpected error", conn.peer)
            keep = False
        if not keep or (self.stopping and conn.answered and not conn.reader.in_request):
            self._drop(conn)

    def _answer(self, request: PolicyRequest) -> str | None:
        if lacks_protocol_state(request):
            log.warning("request without protocol_state; closing the connection without a reply")
            return None
        now = time.time()
        decision = self.policy.decide(request, now)
        if not request.empty:
            if self.decisions is not None:  # None when INFO is off: skip building the line too
                self.decisions.write(describe(request, decision), now)
            if not request.invalid_reply:
                self.policy.log_session(request, decision.action, now)
        return decision.action

    def _close_idle(self, now: float) -> None:
        for conn in list(self.connections.values()):
            if now - conn.last_active > IDLE_TIMEOUT:
                self._drop(conn)

    def _drop(self, conn: Connection) -> None:
        fd = conn.fileno()
        if fd in self.connections:
            del self.connections[fd]
            try:
                self.selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        conn.close()
