"""A worker process: accept, park idle connections in a selector, answer requests one at a time."""

from __future__ import annotations

import errno
import functools
import logging
import os
import selectors
import signal
import socket
import struct
import threading
import time
from typing import Any, Callable

from apd import checks as check_registry
from apd import metrics
from apd import settings as settings_module
from apd.decision_log import DecisionWriter, decision_writer
from apd.drop_log import DropLog
from apd.policy import Policy, describe
from apd.protocol import PolicyRequest, RequestReader, lacks_protocol_state
from apd.server import POLICY, Connection, Drop
from apd.srs import service as srs_service
from apd.srs import table as srs_table
from apd.store import open_store, resolve_paths

log = logging.getLogger(__name__)

STOP_GRACE = 10.0  # seconds a stopping worker waits for half-received requests
FRESH_GRACE = 1.0  # ... and for the first request of a connection it accepted just before
TICK = 1.0
STOP_TICK = 0.1
LOG_FLUSH_INTERVAL = 0.1  # the longest a decision line or smtp_sessions row waits in memory
ACCEPT_PAUSE = 0.5
# Every idle worker wakes for a new client; each taking one spreads a burst (200 Postfix smtpd
# reconnecting at once) over all workers. Taking 64 let one worker own most connections and
# serve them on one core while the others idled (bench: 134 of 200 on one worker).
ACCEPT_PER_WAKEUP = 1
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
BACKGROUND_GRACE = 3.0  # a quota notice being sent (a daemon thread) may finish when the worker stops
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
NO_METRICS = metrics.NullRecorder()


class Worker:
    def __init__(
        self,
        listeners: list[Any],
        settings: Any,
        planned: list[Any],
        ready_fd: int | None = None,
        settings_path: str | None = None,
        reconfigure_logging: Callable[[Any], None] = lambda settings: None,
    ):
        self.listeners = listeners
        self.settings = settings
        self.planned = planned
        self.ready_fd = ready_fd  # our pid written here: "accepting" at first, then a heartbeat each TICK
        self.settings_path = settings_path  # re-read on SIGHUP
        self.reconfigure_logging = reconfigure_logging
        self.stopping = False
        self.reload_asked = False
        self.accept_paused_until = 0.0  # out of descriptors: accepting resumes at this moment
        self.parent = os.getppid()
        self.selector = selectors.DefaultSelector()
        self.connections: dict[int, Connection] = {}
        self.backlog: set[Connection] = set()  # parsed requests left for the next turn
        self.drops = DropLog(log)
        self.decisions: DecisionWriter | None = None  # the INFO line per decision, see apd/decision_log.py
        self.store: Any = None
        self.checks: list[Any] = []
        self.srs: Any = None  # the SRS services, when the settings enable them
        # A connection's requests go to its listener's service: the policy, or an SRS lookup.
        self.answers: dict[str, Callable[[Any], Any]] = {
            POLICY: self._answer,
            srs_service.FORWARD: functools.partial(self._answer_lookup, srs_service.FORWARD),
            srs_service.REVERSE: functools.partial(self._answer_lookup, srs_service.REVERSE),
        }
        self.metrics = metrics.recorder()  # the master's, inherited: a no-op unless METRICS_LISTEN is set

    def run(self) -> int:
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)  # the master blocked them across fork
        self._configure(self.settings, self.planned)
        self.selector.register(wake_r, READ, "wake")
        for listener in self.listeners:
            self.selector.register(listener.socket, READ, listener)
        self._heartbeat()
        try:
            self._loop(wake_r)
        finally:
            self._shut_down()
            # The socket pair closes with this frame: a signal arriving later (the master's SIGTERM
            # after one sent to the whole process group) must not be written to a closed descriptor.
            signal.set_wakeup_fd(-1)
            wake_r.close()
            wake_w.close()
        return 0

    def _shut_down(self) -> None:
        self._flush()  # the decision lines and session rows held for the replies already sent
        for conn in list(self.connections.values()):
            conn.close()
        self._close_checks(self.checks, self.store)
        finish_background_work(BACKGROUND_GRACE)

    def _configure(self, settings: Any, planned: list[Any]) -> None:
        """Build the store, the checks and the policy for ``settings``; raises on failure."""
        store = open_store(settings)
        try:
            checks = check_registry.instantiate(planned, settings, store)
        except BaseException:
            store.close()
            raise
        self.settings, self.planned = settings, planned
        self.store, self.checks = store, checks
        self.policy = Policy(checks, settings, store)
        if self.metrics.enabled:
            self.policy.check_timer = self.metrics.check_time
            for database in [*store.databases(), store.accounts]:  # accounts: LdapAccounts has on_error too
                if hasattr(database, "on_error"):
                    database.on_error = self.metrics.store_error
        self.srs = srs_service.build_service(settings, store)
        self.request_timeout = settings.REQUEST_TIMEOUT
        self.delimiters = tuple(settings.RECIPIENT_DELIMITERS)
        self.decisions = decision_writer(log)

    def _reload(self) -> None:
        """SIGHUP: new settings and checks between two requests; connections stay open."""
        self.reload_asked = False
        old_settings, old_checks, old_store = self.settings, self.checks, self.store
        try:
            new = resolve_paths(settings_module.load(self.settings_path))
            planned, _ = check_registry.plan(new)  # the master logged the warnings
            new = new.replace(listen_address=old_settings.listen_address, listen_port=old_settings.listen_port)
            self._flush()  # the held session rows go to the store they were meant for
            self.reconfigure_logging(new)
            self._configure(new, planned)
        except settings_module.ConfigError as exc:
            self.reconfigure_logging(old_settings)
            self.decisions = decision_writer(log)
            log.error("worker %d: reload refused, keeping the running settings: %s", os.getpid(), exc)
            return
        except Exception:
            self.reconfigure_logging(old_settings)
            self.decisions = decision_writer(log)
            log.exception("worker %d: reload failed, keeping the running settings", os.getpid())
            return
        for conn in self.connections.values():
            conn.reader.delimiters = self.delimiters
            conn.request_timeout = self.request_timeout
        self._close_checks(old_checks, old_store)

    @staticmethod
    def _close_checks(checks: list[Any], store: Any) -> None:
        for check in checks:
            try:
                check.close()
            except Exception:
                log.exception("closing check %s failed", getattr(check, "name", check))
        if store is not None:
            store.close()

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

    def _on_reload(self, signum: int, frame: Any) -> None:
        self.reload_asked = True

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
            else:
                if self.reload_asked:
                    self._reload()
                if self.accept_paused_until and time.monotonic() >= self.accept_paused_until:
                    self._resume_accepting()
            timeout = TICK
            if self.backlog:
                timeout = 0
            elif self.stopping or self.accept_paused_until:
                timeout = STOP_TICK
            elif self.policy.sessions.holding() or (self.decisions is not None and self.decisions.holding()):
                timeout = LOG_FLUSH_INTERVAL  # held decision lines and session rows wait no longer than this
            events = self.selector.select(timeout)
            for key, mask in events:
                target = key.data
                if target == "wake":
                    try:
                        wake.recv(512)
                    except BlockingIOError:
                        pass
                elif isinstance(target, Connection):
                    self._on_ready(target, mask)
                else:
                    self._accept(target)
            if self.backlog:
                for conn in list(self.backlog):
                    self.backlog.discard(conn)
                    if conn.fileno() in self.connections:
                        self._work(conn)
            now = time.monotonic()
            if not events or now - flushed_at >= LOG_FLUSH_INTERVAL or self.policy.sessions.full():
                # Decision lines and session rows go out after the replies, when the loop goes idle,
                # and while it is busy every LOG_FLUSH_INTERVAL (or MAX_PENDING of them): one
                # write and one INSERT for many requests.
                self._flush()
                flushed_at = now
            if now - last_sweep >= TICK:
                last_sweep = now
                self._heartbeat()
                if os.getppid() != self.parent:
                    log.error("master went away; worker %d exits", os.getpid())
                    return
                self._expire(now)
                self.drops.sweep(now)
                if self.metrics.enabled:
                    idle = sum(1 for conn in self.connections.values() if not conn.busy())
                    self.metrics.connections(len(self.connections), idle)

    def _flush(self) -> None:
        if self.decisions is not None:
            self.decisions.flush()
        self.policy.sessions.flush()
        self.metrics.flush()  # the requests counted since the last flush (a no-op with metrics off)

    def _begin_stop(self) -> None:
        """Stop accepting (the master and other workers keep the socket) and answer what has arrived."""
        if self.accept_paused_until:
            self._resume_accepting()
        for listener in self.listeners:
            self.selector.unregister(listener.socket)
            listener.socket.close()
        for conn in list(self.connections.values()):
            self._on_ready(conn, READ)

    def _drop_when_stopping(self, elapsed: float) -> None:
        """Idle persistent connections go now (Postfix reconnects); a half-received request is
        awaited up to STOP_GRACE, the first request of a just-accepted connection up to FRESH_GRACE."""
        for conn in list(self.connections.values()):
            if elapsed > STOP_GRACE:
                self._drop(conn)
            elif not conn.busy() and (conn.answered or elapsed > FRESH_GRACE):
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
            service = getattr(listener, "service", POLICY)
            if service == POLICY:
                conn = Connection(
                    sock, peer, RequestReader(delimiters=self.delimiters), time.monotonic(), self.request_timeout
                )
            else:  # an SRS port: Postfix's tcp_table lines
                conn = Connection(
                    sock,
                    peer,
                    srs_table.LineReader(),
                    time.monotonic(),
                    self.request_timeout,
                    service=service,
                    encode=srs_table.encode_reply,
                )
            self.connections[conn.fileno()] = conn
            conn.events = READ
            self.selector.register(sock, READ, conn)

    def _pause_accepting(self) -> None:
        if self.accept_paused_until:
            return
        for listener in self.listeners:
            self.selector.unregister(listener.socket)
        self.accept_paused_until = time.monotonic() + ACCEPT_PAUSE

    def _resume_accepting(self) -> None:
        for listener in self.listeners:
            self.selector.register(listener.socket, READ, listener)
        self.accept_paused_until = 0.0

    def _on_ready(self, conn: Connection, mask: int) -> None:
        now = time.monotonic()
        drop = None
        if mask & WRITE:
            drop = conn.send(now)
        if drop is None and mask & READ and conn.wants_input():
            drop = conn.receive(now)
        if drop is not None:
            self._drop(conn, drop)
            return
        self._work(conn)

    def _work(self, conn: Connection) -> None:
        """Answer what is pending (a turn's worth), then watch for what the connection needs next."""
        try:
            drop = conn.answer_pending(self.answers[conn.service], time.monotonic())
        except Exception:  # a bug outside the checks: lose this connection, not the worker's others
            log.exception("connection from %s closed: unexpected error", conn.peer_address)
            drop = Drop("internal error", quiet=True)
        if drop is not None:
            self._drop(conn, drop)
            return
        if self.stopping and conn.answered and not conn.busy():
            self._drop(conn)
            return
        wanted = (READ if conn.wants_input() else 0) | (WRITE if conn.outbox else 0)
        if wanted != conn.events:
            if not conn.events:
                self.selector.register(conn.sock, wanted, conn)
            elif wanted:
                self.selector.modify(conn.sock, wanted, conn)
            else:  # requests wait for their turn (the backlog), or the last replies before closing
                self.selector.unregister(conn.sock)
            conn.events = wanted
        if conn.can_answer():
            self.backlog.add(conn)

    def _answer(self, request: PolicyRequest) -> str | None:
        return answer(self.policy, self.decisions, request, time.time(), self.metrics)

    def _answer_lookup(self, service: str, request: srs_table.TableRequest) -> srs_table.Reply:
        if self.srs is None:  # a reload turned SRS off; its ports stay bound until a restart
            return srs_table.Reply(srs_table.TRY_AGAIN, "SRS is not configured")
        return self.srs.answer(service, request.line, time.time())

    def _expire(self, now: float) -> None:
        for conn in list(self.connections.values()):
            drop = conn.expired(now)
            if drop is not None:
                self._drop(conn, drop)

    def _drop(self, conn: Connection, drop: Drop | None = None) -> None:
        fd = conn.fileno()
        if fd in self.connections:
            del self.connections[fd]
            if conn.events:
                try:
                    self.selector.unregister(conn.sock)
                except (KeyError, ValueError):
                    pass
        self.backlog.discard(conn)
        if drop is not None and not drop.quiet:
            self.drops.record(conn.peer_address, drop.reason, drop.detail, time.monotonic())
            self.metrics.drop(drop.reason)
        conn.close()


def answer(
    policy: Policy,
    decisions: DecisionWriter | None,
    request: PolicyRequest,
    now: float,
    recorder: metrics.Recorder = NO_METRICS,
) -> str | None:
    """The action for one request; its decision line and session row are queued (written after
    the reply, see Worker._flush). None: close without a reply."""
    if lacks_protocol_state(request):
        return None
    decision = policy.decide(request, now)
    if not request.empty:
        if recorder.enabled:  # like the decision line: an empty request (a probe) is not counted
            recorder.request(request.protocol_state, decision.check, decision.action, decision.millis / 1000)
        if decisions is not None:  # None when INFO is off: skip building the line too
            decisions.write(describe(request, decision), now)
        if not request.invalid_reply:
            policy.log_session(request, decision.action, now)
    return decision.action


def finish_background_work(timeout: float) -> None:
    """Wait up to ``timeout`` for threads still running (notices being sent): the worker's exit
    would cut them off, and a notice already claimed would never be sent."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
