"""The master: bind, drop privileges, fork workers, supervise them, reload on SIGHUP."""

from __future__ import annotations

import logging
import os
import pwd
import resource
import selectors
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from apd import checks as check_registry
from apd import metrics
from apd import settings as settings_module
from apd.metrics.exposition import MetricsServer, MultiprocessFolder, parse_listen
from apd.metrics.recorder import PrometheusRecorder
from apd.privileges import become
from apd.server import POLICY, bind_listeners
from apd.srs import service as srs_service
from apd.store import resolve_paths
from apd.worker import Worker

log = logging.getLogger(__name__)

EX_BOOT_LOOP = 3  # workers keep dying right after start: halt instead of forking forever
FAST_DEATHS_LIMIT = 10
FAST_DEATH_SECONDS = 2.0
STOP_TIMEOUT = 15.0  # a stopping worker gets this long before SIGKILL
TRIAL_TIMEOUT = 15.0  # a reload builds the new checks once in a child before the workers do
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
_PID = struct.Struct("=i")  # a worker reports readiness by writing its pid (atomic: < PIPE_BUF)


class HaltServer(Exception):
    def __init__(self, reason: str, exit_code: int = 1):
        super().__init__(reason)
        self.exit_code = exit_code


@dataclass
class WorkerInfo:
    pid: int
    started: float
    ready: bool = False
    last_seen: float = 0.0  # monotonic time of the last heartbeat
    kill_at: float | None = None  # set once asked to stop: SIGKILL after this moment


@dataclass
class Master:
    settings: Any
    settings_path: str | None
    reconfigure_logging: Callable[[Any], None] = lambda settings: None
    workers: dict[int, WorkerInfo] = field(default_factory=dict)
    signals: list[int] = field(default_factory=list)
    fast_deaths: int = 0
    # After a reload: the previous (settings, planned), started again if new workers keep dying.
    previous: tuple[Any, list[Any]] | None = None
    announced: bool = False  # READY=1 sent to systemd
    metrics_server: Any = None  # the METRICS_LISTEN listener (apd/metrics/exposition.py), when set

    def run(self) -> int:
        planned, warnings = check_registry.plan(self.settings)
        for warning in (*self.settings.warnings, *warnings):
            log.warning("%s", warning)
        self.planned = planned
        raise_open_files_limit()
        self.listeners = bind_listeners(self.settings.listen_address, self.settings.listen_port)
        self.listeners += bind_srs_listeners(self.settings)
        self.metrics_server = bind_metrics(self.settings.METRICS_LISTEN)
        prepare_store(self.settings)
        self.pid_file = write_pid_file(self.settings.pid_file) if self.settings.pid_file else None
        if self.metrics_server is not None:
            # before the drop: prometheus_client is imported (from a venv the account may not
            # reach), the folder given to the account the workers write as
            try:
                self.metrics_server.folder = MultiprocessFolder(metrics_owner(self.settings.run_as_user))
            except ImportError as exc:  # prometheus_client missing (setup.py requires it) or imported too early
                raise HaltServer(f"METRICS_LISTEN: {exc}") from None
        preload_for_account(self.settings, self.settings_path)
        drop_privileges(self.settings.run_as_user)
        if self.metrics_server is not None:
            metrics.install(PrometheusRecorder())  # its files made as the account
            log.info(
                "Serving metrics on http://%s/metrics (workers' files in %s)",
                self.metrics_server.address,
                self.metrics_server.folder.path,
            )
        self._log_start()
        self.wake_r, self.wake_w = os.pipe()
        self.ready_r, self.ready_w = os.pipe()
        for fd in (self.wake_r, self.wake_w, self.ready_r, self.ready_w):
            os.set_blocking(fd, False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.selector.register(self.ready_r, selectors.EVENT_READ)
        if self.metrics_server is not None:
            self.metrics_server.start(self.selector)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._record_signal)
        try:
            self._spawn_missing()
            return self._loop()
        except HaltServer as exc:
            log.error("halting: %s", exc)
            self._stop_workers(list(self.workers))
            return exc.exit_code
        finally:
            self._close_listeners()
            if self.metrics_server is not None:
                self.metrics_server.close()
                if self.metrics_server.folder is not None:
                    self.metrics_server.folder.remove()
            if self.pid_file:
                try:
                    os.unlink(self.pid_file)
                except OSError:
                    pass

    def _record_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)  # handled in the loop; nothing else happens here

    def _loop(self) -> int:
        while True:
            for key, mask in self.selector.select(0.5):
                if key.data is not None and self.metrics_server is not None:
                    self.metrics_server.handle(key, mask)
            if self.metrics_server is not None:
                self.metrics_server.expire(time.monotonic())
            _drain(self.wake_r)
            self._read_ready()
            if not self.announced and any(w.ready for w in self.workers.values()):
                self.announced = True
                notify_systemd("READY=1")  # a worker accepts: systemd may start Postfix now
            while self.signals:
                signum = self.signals.pop(0)
                if signum in (signal.SIGTERM, signal.SIGINT):
                    log.info("stopping (signal %s): answering in-flight requests", signal.Signals(signum).name)
                    notify_systemd("STOPPING=1")
                    self._close_listeners()  # new clients are refused once the workers let go too
                    self._stop_workers(list(self.workers))
                    log.info("apd stopped")
                    return 0
                if signum == signal.SIGHUP:
                    self._reload()
            self._reap()
            self._spawn_missing()
            self._kill_overdue()
            self._kill_hung()

    def _close_listeners(self) -> None:
        for listener in self.listeners:
            listener.server_close()

    def _log_start(self) -> None:
        names = ", ".join(f"{p.name}({p.priority})" for p in self.planned) or "(none)"
        addresses = ", ".join(
            f"{s.server_address[0]}:{s.server_address[1]}" for s in self.listeners if s.service == POLICY
        )
        log.info(
            "Starting apd (backend: %s), listening on %s with %d workers; checks: %s",
            self.settings.backend,
            addresses,
            self.settings.worker_count,
            names,
        )

    # --- workers

    def _spawn_missing(self) -> None:
        current = [w for w in self.workers.values() if w.kill_at is None]
        for _ in range(self.settings.worker_count - len(current)):
            self._spawn()

    def _spawn(self) -> None:
        # Signals stay blocked across fork, so that a SIGTERM cannot reach the child before
        # the worker has its own handlers (the child would otherwise record it as a master).
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
            raise
        if pid == 0:
            code = 1
            try:
                signal.set_wakeup_fd(-1)
                self.selector.close()
                if self.metrics_server is not None:
                    self.metrics_server.forget()  # the master's sockets, not the worker's
                for fd in (self.wake_r, self.wake_w, self.ready_r):
                    os.close(fd)
                worker = Worker(
                    self.listeners,
                    self.settings,
                    self.planned,
                    ready_fd=self.ready_w,
                    settings_path=self.settings_path,
                    reconfigure_logging=self.reconfigure_logging,
                )
                code = worker.run()
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(code)
        self.workers[pid] = WorkerInfo(pid, time.monotonic())
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        metrics.recorder().workers(len(self.workers))

    def _read_ready(self) -> None:
        data = _drain(self.ready_r)
        now = time.monotonic()
        for (pid,) in _PID.iter_unpack(data[: len(data) - len(data) % _PID.size]):
            if pid in self.workers:
                self.workers[pid].ready = True
                self.workers[pid].last_seen = now

    def _kill_hung(self) -> None:
        """A worker silent for worker_timeout is stuck (Postfix gave up on it after 100 s anyway)."""
        timeout = self.settings.worker_timeout
        if not timeout:
            return
        now = time.monotonic()
        for info in self.workers.values():
            if info.kill_at is None and now - (info.last_seen or info.started) > timeout:
                log.error("worker %d has not answered for %.0f s; killing it", info.pid, timeout)
                _kill(info.pid, signal.SIGKILL)
                info.kill_at = float("inf")
                metrics.recorder().worker_restart()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            info = self.workers.pop(pid, None)
            self._worker_gone(pid)
            if info is None or info.kill_at is not None:
                continue  # a retired or stopping worker has left
            code = os.waitstatus_to_exitcode(status)
            log.error("worker %d exited (%s); starting a replacement", pid, _describe_exit(code))
            metrics.recorder().worker_restart()
            if time.monotonic() - info.started >= FAST_DEATH_SECONDS:
                self.fast_deaths = 0
                continue
            self.fast_deaths += 1
            if self.fast_deaths < FAST_DEATHS_LIMIT:
                continue
            if self.previous is not None:
                self._roll_back()
                continue
            raise HaltServer("workers die right after starting; see the errors above", EX_BOOT_LOOP)

    def _worker_gone(self, pid: int) -> None:
        """Its live gauges leave the metrics (what it counted stays in the totals)."""
        if self.metrics_server is not None and self.metrics_server.folder is not None:
            self.metrics_server.folder.mark_dead(pid)
            metrics.recorder().workers(len(self.workers))

    def _ask_to_stop(self, pids: list[int]) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT
        for pid in pids:
            info = self.workers.get(pid)
            if info is not None and info.kill_at is None:
                info.kill_at = deadline
                _kill(pid, signal.SIGTERM)

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        for info in list(self.workers.values()):
            if info.kill_at is not None and now > info.kill_at:
                log.warning("worker %d did not stop in time; killing it", info.pid)
                _kill(info.pid, signal.SIGKILL)
                info.kill_at = float("inf")

    def _stop_workers(self, pids: list[int]) -> None:
        self._ask_to_stop(pids)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(pid in self.workers for pid in pids) and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
                continue
            self.workers.pop(pid, None)
        for pid in pids:
            if pid in self.workers:
                log.warning("worker %d did not stop in time; killing it", pid)
                _kill(pid, signal.SIGKILL)
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
                self.workers.pop(pid, None)

    # --- reload: each worker re-reads the settings between two requests and keeps its connections

    def _reload(self) -> None:
        try:
            new = resolve_paths(settings_module.load(self.settings_path))
            planned, warnings = check_registry.plan(new)
        except settings_module.ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused, keeping the running settings: %s", problem)
            return
        for warning in (*new.warnings, *warnings):
            log.warning("%s", warning)
        if (new.listen_address, new.listen_port) != (self.settings.listen_address, self.settings.listen_port):
            log.warning("listen_address/listen_port changed: a restart is needed for that part")
            new = new.replace(listen_address=self.settings.listen_address, listen_port=self.settings.listen_port)
        if new.run_as_user != self.settings.run_as_user:
            log.warning("run_as_user changed: a restart is needed for that part")
        if new.METRICS_LISTEN != self.settings.METRICS_LISTEN:
            log.warning("METRICS_LISTEN changed: a restart is needed for that part")
        try:
            prepare_store(new)
        except Exception as exc:  # e.g. a new sqlite_db_path we may not create after dropping root
            log.error("reload refused, keeping the running settings: cannot prepare the store: %s", exc)
            return
        failure = trial_build(new, planned)
        if failure:  # the workers would keep their settings and every new worker would die
            log.error("reload refused, keeping the running settings: the checks do not start: %s", failure)
            return
        self.previous = (self.settings, self.planned)
        self.settings, self.planned = new, planned
        self.reconfigure_logging(new)
        self.fast_deaths = 0
        serving = sorted(pid for pid, w in self.workers.items() if w.kill_at is None)
        for pid in serving:
            _kill(pid, signal.SIGHUP)
        surplus = len(serving) - new.worker_count
        if surplus > 0:
            self._ask_to_stop(serving[-surplus:])
        self._spawn_missing()
        log.info("reloading settings; checks: %s", ", ".join(p.name for p in planned) or "(none)")

    def _roll_back(self) -> None:
        settings, planned = self.previous
        log.error("reload failed: new workers die right after starting; they start with the previous settings")
        self.settings, self.planned = settings, planned
        self.reconfigure_logging(settings)
        self.previous = None
        self.fast_deaths = 0


def bind_metrics(listen: str) -> MetricsServer | None:
    """The metrics listener when METRICS_LISTEN names one (settings.py has checked the form)."""
    if not listen:
        return None
    host, port = parse_listen(listen)
    return MetricsServer(host, port)


def metrics_owner(user_name: str) -> pwd.struct_passwd | None:
    """Who owns the metrics folder: the account root drops to; None when apd stays as it is."""
    return run_as_account(user_name, warn=False) if os.geteuid() == 0 else None


def bind_srs_listeners(settings: Any) -> list[Any]:
    """The two tcp_table ports of SRS, when the settings enable it (srs.md §1), with
    iRedAPD's log lines."""
    if not srs_service.enabled(settings):
        log.info("No SRS domain and/or secret strings in settings.py, not loaded.")
        return []
    srs_service.server_hostname()  # asked once, before the workers fork
    bound = []
    try:
        for service, port, name in (
            (srs_service.FORWARD, settings.srs_forward_port, "sender"),
            (srs_service.REVERSE, settings.srs_reverse_port, "recipient"),
        ):
            listeners = bind_listeners(settings.listen_address, port, service)
            bound += listeners
            for listener in listeners:
                host, bound_port = listener.server_address[:2]
                log.info("Starting SRS %s rewriting channel, listening on %s:%s", name, host, bound_port)
    except OSError:
        for listener in bound:
            listener.server_close()
        raise
    return bound


def trial_build(settings: Any, planned: list[Any]) -> str | None:
    """Build the store and the checks of ``settings`` once, in a child (nothing of it stays in
    the master), as every worker is about to: why that fails, or None."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        code = 0
        try:
            from apd.store import open_store

            store = open_store(settings)
            for check in check_registry.instantiate(planned, settings, store):
                check.close()
            store.close()
        except BaseException as exc:
            os.write(write_fd, f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")[:1000])
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    deadline = time.monotonic() + TRIAL_TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            _kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_fd)
            return f"building them took over {TRIAL_TIMEOUT:.0f} s"
        time.sleep(0.02)
    reason = _drain_blocking(read_fd)
    os.close(read_fd)
    if os.waitstatus_to_exitcode(status) == 0:
        return None
    return reason.decode("utf-8", "replace") or _describe_exit(os.waitstatus_to_exitcode(status))


def _drain_blocking(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def raise_open_files_limit() -> None:
    """Idle Postfix connections each hold a descriptor: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)


def _drain(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe_exit(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def prepare_store(settings: Any) -> None:
    """Database servers: check that their Python drivers import. SQLite: create the file and its
    tables at first start, owned by the account workers run as, then have that account write.

    SQLite writes -wal/-shm files beside the database, so the folder goes to that account too, but
    only a folder of its own (made by apd, apd's default, or holding nothing but this database):
    ``sqlite_db_path = '/var/lib/apd.sqlite3'`` must not give /var/lib away. In any other folder
    the account must be able to write already, else apd refuses to start (StoreError naming the
    folder and the fix): given only the file, every request answered DUNNO.
    """
    if settings.backend != "sqlite":
        from apd.store.servers import check_drivers

        check_drivers(settings)
        return
    from apd.errors import StoreError
    from apd.store import sqlite

    path = os.path.abspath(settings.sqlite_db_path or sqlite.default_path())
    directory = os.path.dirname(path)
    existed = os.path.isdir(directory)
    db = sqlite.open_database(path, settings.SQL_QUERY_TIMEOUT)
    sqlite.initialise(db)
    db.close()
    user = run_as_account(settings.run_as_user, warn=False) if os.geteuid() == 0 else None
    if user is not None:
        files = {os.path.basename(path) + suffix for suffix in ("", "-wal", "-shm", "-journal")}
        own_folder = (
            not existed or directory == os.path.dirname(sqlite.SYSTEM_PATH) or set(os.listdir(directory)) <= files
        )
        for target in ((directory,) if own_folder else ()) + (path, path + "-wal", path + "-shm", path + "-journal"):
            if os.path.exists(target):
                os.chown(target, user.pw_uid, user.pw_gid)
    problem = sqlite.account_write_problem(user, path, settings.SQL_QUERY_TIMEOUT)
    if problem:
        raise StoreError(problem)


def resolve_user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def run_as_account(user_name: str, warn: bool = True) -> pwd.struct_passwd | None:
    """The account root drops to: run_as_user, else nobody; None when that is root itself."""
    user = resolve_user(user_name)
    if user is None:
        if warn:
            log.warning("run_as_user %r does not exist; running as 'nobody' instead", user_name)
        user = pwd.getpwnam("nobody")
    if user.pw_uid == 0:
        if warn:
            log.warning("run_as_user %r is root: not dropping privileges", user_name)
        return None
    return user


def drop_privileges(user_name: str) -> None:
    """As root: switch to ``run_as_user`` (groups, gid, uid). As anyone else: stay as we are."""
    if os.geteuid() != 0:
        return
    user = run_as_account(user_name)
    if user is None:
        return
    become(user)  # supplementary groups cleared (iRedAPD keeps root's), gid, uid
    if os.geteuid() == 0:
        raise HaltServer("could not drop root privileges")


def preload_for_account(settings: Any, settings_path: str | None) -> None:
    """Before root drops to run_as_user: import every module a worker will import (a clone in a
    private folder such as root's home is out of the account's reach afterwards), and warn about
    each file the account must still read later but cannot (settings and custom checks on reload)."""
    if os.geteuid() != 0:
        return
    user = run_as_account(settings.run_as_user, warn=False)
    if user is None:
        return
    from apd.preload import needed_later, preload_modules, unreadable_warnings

    for failure in preload_modules():
        log.debug("not preloaded: %s", failure)  # an optional driver that is not installed
    for warning in unreadable_warnings(user, needed_later(settings, settings_path)):
        log.warning("%s", warning)


def write_pid_file(path: str) -> str | None:
    """Best effort: apd stays in the foreground and systemd tracks its pid, so an iRedAPD
    ``pid_file = '/var/run/iredapd.pid'`` that a sandbox makes read-only must not stop it."""
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(f"{os.getpid()}\n")
    except OSError as exc:
        log.warning("cannot write pid_file %s: %s", path, exc.strerror or exc)
        return None
    return path


def notify_systemd(message: str) -> None:
    """sd_notify for Type=notify units; a no-op elsewhere."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:
        log.warning("cannot notify systemd: %s", exc)
