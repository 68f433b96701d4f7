"""The master: bind, drop privileges, fork workers, supervise them, reload on SIGHUP."""

from __future__ import annotations

import logging
import os
import pwd
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from apd import checks as check_registry
from apd import settings as settings_module
from apd.server import bind_listeners
from apd.store import resolve_paths
from apd.worker import Worker

log = logging.getLogger(__name__)

EX_BOOT_LOOP = 3  # workers keep dying right after start: halt instead of forking forever
FAST_DEATHS_LIMIT = 10
FAST_DEATH_SECONDS = 2.0
STOP_TIMEOUT = 15.0


class HaltServer(Exception):
    def __init__(self, reason: str, exit_code: int = 1):
        super().__init__(reason)
        self.exit_code = exit_code


@dataclass
class WorkerInfo:
    pid: int
    generation: int
    started: float


@dataclass
class Master:
    settings: Any
    settings_path: str | None
    reconfigure_logging: Callable[[Any], None] = lambda settings: None
    workers: dict[int, WorkerInfo] = field(default_factory=dict)
    generation: int = 0
    signals: list[int] = field(default_factory=list)
    fast_deaths: int = 0

    def run(self) -> int:
        planned, warnings = check_registry.plan(self.settings)
        for warning in (*self.settings.warnings, *warnings):
            log.warning("%s", warning)
        self.planned = planned
        self.listeners = bind_listeners(self.settings.listen_address, self.settings.listen_port)
        prepare_store(self.settings)
        if self.settings.pid_file:
            write_pid_file(self.settings.pid_file)
        drop_privileges(self.settings.run_as_user)
        self._log_start()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, self._record_signal)
        try:
            self._spawn_missing()
            notify_systemd("READY=1")
            return self._loop(wake_r)
        except HaltServer as exc:
            log.error("halting: %s", exc)
            self._stop_workers(list(self.workers))
            return exc.exit_code
        finally:
            for listener in self.listeners:
                listener.server_close()
            if self.settings.pid_file:
                try:
                    os.unlink(self.settings.pid_file)
                except OSError:
                    pass

    def _record_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)  # handled in the loop; nothing else happens here

    def _loop(self, wake_r: int) -> int:
        while True:
            try:
                select.select([wake_r], [], [], 1.0)
            except InterruptedError:
                pass
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            while self.signals:
                signum = self.signals.pop(0)
                if signum in (signal.SIGTERM, signal.SIGINT):
                    log.info("stopping (signal %s): answering in-flight requests", signal.Signals(signum).name)
                    self._stop_workers(list(self.workers))
                    log.info("apd stopped")
                    return 0
                if signum == signal.SIGHUP:
                    self._reload()
            self._reap()
            self._spawn_missing()

    def _log_start(self) -> None:
        names = ", ".join(f"{p.name}({p.priority})" for p in self.planned) or "(none)"
        addresses = ", ".join(f"{s.server_address[0]}:{s.server_address[1]}" for s in self.listeners)
        log.info(
            "Starting apd (backend: %s), listening on %s with %d workers; checks: %s",
            self.settings.backend,
            addresses,
            self.settings.worker_count,
            names,
        )

    # --- workers

    def _spawn_missing(self) -> None:
        current = [w for w in self.workers.values() if w.generation == self.generation]
        for _ in range(self.settings.worker_count - len(current)):
            self._spawn()

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.set_wakeup_fd(-1)
                code = Worker(self.listeners, self.settings, self.planned, self.generation).run()
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(code)
        self.workers[pid] = WorkerInfo(pid, self.generation, time.monotonic())

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            info = self.workers.pop(pid, None)
            if info is None:
                continue
            if info.generation != self.generation:
                continue  # a retired worker finished its graceful stop
            code = os.waitstatus_to_exitcode(status)
            log.error("worker %d exited (%s); starting a replacement", pid, _describe_exit(code))
            if time.monotonic() - info.started < FAST_DEATH_SECONDS:
                self.fast_deaths += 1
                if self.fast_deaths >= FAST_DEATHS_LIMIT:
                    raise HaltServer("workers die right after starting; see the errors above", EX_BOOT_LOOP)
            else:
                self.fast_deaths = 0

    def _stop_workers(self, pids: list[int]) -> None:
        for pid in pids:
            _kill(pid, signal.SIGTERM)
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

    # --- reload

    def _reload(self) -> None:
        try:
            new = resolve_paths(settings_module.load(self.settings_path))
            planned, warnings = check_registry.plan(new)
        except settings_module.ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused: %s", problem)
            return
        for warning in (*new.warnings, *warnings):
            log.warning("%s", warning)
        if (new.listen_address, new.listen_port) != (self.settings.listen_address, self.settings.listen_port):
            log.warning("listen_address/listen_port changed: a restart is needed for that part")
            new = new.replace(listen_address=self.settings.listen_address, listen_port=self.settings.listen_port)
        old = [pid for pid, w in self.workers.items() if w.generation == self.generation]
        self.settings, self.planned = new, planned
        self.reconfigure_logging(new)
        self.generation += 1
        self.fast_deaths = 0
        self._spawn_missing()  # new workers accept before the old ones leave: no refused connection
        for pid in old:
            _kill(pid, signal.SIGTERM)
        log.info("reloaded settings; checks: %s", ", ".join(p.name for p in planned) or "(none)")


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe_exit(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def prepare_store(settings: Any) -> None:
    """SQLite: create the file and its tables at first start, owned by the run_as_user."""
    if settings.backend != "sqlite":
        return
    from apd.store import sqlite

    path = settings.sqlite_db_path or sqlite.default_path()
    db = sqlite.open_database(path, settings.SQL_QUERY_TIMEOUT)
    sqlite.initialise(db)
    db.close()
    if os.geteuid() == 0:
        user = resolve_user(settings.run_as_user)
        if user is not None:
            directory = os.path.dirname(path) or "."
            for target in (directory, path, path + "-wal", path + "-shm"):
                if os.path.exists(target):
                    os.chown(target, user.pw_uid, user.pw_gid)


def resolve_user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def drop_privileges(user_name: str) -> None:
    """As root: switch to ``run_as_user`` (groups, gid, uid). As anyone else: stay as we are."""
    if os.geteuid() != 0:
        return
    user = resolve_user(user_name)
    if user is None:
        log.warning("run_as_user %r does not exist; running as 'nobody' instead", user_name)
        user = pwd.getpwnam("nobody")
    if user.pw_uid == 0:
        log.warning("run_as_user %r is root: not dropping privileges", user_name)
        return
    os.setgroups([])
    os.initgroups(user.pw_name, user.pw_gid)
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    if os.geteuid() == 0:
        raise HaltServer("could not drop root privileges")


def write_pid_file(path: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(f"{os.getpid()}\n")


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
