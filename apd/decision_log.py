"""apd's log handlers, and a fast path for the one INFO line per decision.

The logging module spends 40-60 us per record (record object, caller lookup, formatting,
a write and a flush), more than a whole request costs otherwise. Each handler here therefore
offers a ``decision_writer()`` that puts the decision line into the same place in the same
format without that machinery; every other message still goes through ``logging``.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
import time
from collections import deque
from typing import Any, Callable, Protocol

from apd.log_escape import escape_controls, escaped_traceback

STDERR_FORMAT = "%(asctime)s %(levelname)s %(message)s"
SYSLOG_FORMAT = "apd[%(process)d]: %(message)s"
MILLISECONDS = tuple(f"{ms:03d}" for ms in range(1000))  # "000".."999": a lookup, not a format per line


class DecisionWriter(Protocol):
    def write(self, message: str, now: float) -> None: ...

    def flush(self) -> None: ...

    def holding(self) -> bool:
        """True while written lines wait for ``flush``."""
        ...


class EscapingFormatter(logging.Formatter):
    """Control characters in a message become ``\\xNN``: a value a client chose, logged anywhere,
    cannot start a line of its own. A traceback appended after the message keeps its lines; the
    exception texts in it are escaped the same way."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        exc_type, exc, tb = ei
        if exc_type is None or exc is None:
            return super().formatException(ei)
        return escaped_traceback(exc_type, exc, tb)


class StderrHandler(logging.StreamHandler):
    """``logging.StreamHandler`` on stderr with apd's line format."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(EscapingFormatter(STDERR_FORMAT))
        self.writer: StreamWriter | None = None

    def decision_writer(self, logger: logging.Logger) -> DecisionWriter:
        if self.writer is None:
            self.writer = StreamWriter(self.stream)
        return self.writer

    def emit(self, record: logging.LogRecord) -> None:
        if self.writer is not None:
            self.writer.flush()  # decision lines held back go first: the log keeps its order
        super().emit(record)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()
        super().flush()


SYSLOG_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
SYSLOG_RETRY_SECONDS = 30.0


class SyslogHandler(logging.Handler):
    """Records to syslog, framed as ``logging.handlers.SysLogHandler`` frames them
    (``<PRI>apd[pid]: message\\0``), and to stderr while syslog cannot be reached.

    A container has no ``/dev/log``, and a syslog daemon restarts: SysLogHandler then printed a
    traceback for every record (16 MB in 15 s under load). Here the first failure sends records
    to stderr with one warning, a new connection is tried every ``retry_seconds``, and one notice
    says when syslog is back. The master and its workers share who says so (``ReachabilityFlag``),
    so an outage is reported once, not once per process.
    """

    def __init__(
        self,
        address: str | tuple[str, int],
        facility: int,
        retry_seconds: float = SYSLOG_RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.address = address
        self.facility = facility
        self.where = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.setFormatter(EscapingFormatter(SYSLOG_FORMAT))
        self.fallback = StderrHandler()
        self.flag = ReachabilityFlag()
        self.socket: socket.socket | None = None
        self.down = False  # this process sends to stderr
        self.retry_at = 0.0
        self._connect()

    def priority(self, level: int) -> int:
        return (self.facility << 3) | SYSLOG_PRIORITIES.get(level, 4)

    def decision_writer(self, logger: logging.Logger) -> DecisionWriter:
        return SyslogWriter(self, self.fallback.decision_writer(logger))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = f"<{self.priority(record.levelno)}>{self.format(record)}\0".encode("utf-8", "replace")
        except Exception:
            self.handleError(record)
            return
        if not self.send(data):
            self.fallback.emit(record)

    def send(self, data: bytes) -> bool:
        """One message to syslog; False when it must go to stderr instead."""
        if self.socket is None and (self.clock() < self.retry_at or not self._connect()):
            return False
        try:
            self._send(data)
            return True
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                return False  # this one message is too long for a datagram: not an outage
        # The daemon restarted (a new socket at the same path): one new connection at once.
        if not self._connect():
            return False
        try:
            self._send(data)
            return True
        except OSError as exc:
            self._went_down(exc)
            return False

    def _send(self, data: bytes) -> None:
        if self.socket is None:
            raise OSError("not connected")
        if isinstance(self.address, str):
            self.socket.sendall(data)  # a datagram, or the whole message on a stream socket
        else:
            self.socket.sendto(data, self.address)

    def _connect(self) -> bool:
        self._close_socket()
        try:
            self.socket = open_syslog_socket(self.address)
        except OSError as exc:
            self._went_down(exc)
            return False
        if self.down:
            self.down = False
            if self.flag.change(down=False):
                self._announce(logging.WARNING, f"syslog at {self.where} reachable again; logging to syslog")
        return True

    def _went_down(self, exc: OSError) -> None:
        self._close_socket()
        self.retry_at = self.clock() + self.retry_seconds
        if self.down:
            return
        self.down = True
        if self.flag.change(down=True):
            self._announce(logging.WARNING, f"syslog at {self.where} unreachable: {exc}; logging to stderr")

    def _announce(self, level: int, message: str) -> None:
        """A change of where the log goes, on stderr (and in syslog once it is back)."""
        record = logging.LogRecord("apd", level, __file__, 0, "%s", (message,), None)
        if not self.down:
            try:
                self._send(f"<{self.priority(level)}>{self.format(record)}\0".encode())
            except OSError:
                pass
        self.fallback.emit(record)

    def _close_socket(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def flush(self) -> None:
        self.fallback.flush()

    def close(self) -> None:
        self._close_socket()
        self.flag.close()
        self.fallback.close()
        super().close()


SYSLOG_SEND_TIMEOUT = 0.2


def open_syslog_socket(address: str | tuple[str, int]) -> socket.socket:
    """A unix socket path: datagram, else stream (as SysLogHandler tries them). (host, port): UDP."""
    if not isinstance(address, str):
        host, port = address
        family, kind, proto, _, _ = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
        return socket.socket(family, kind, proto)
    first_error: OSError | None = None
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        sock = socket.socket(socket.AF_UNIX, kind)
        # A syslog daemon that stops reading must not stop the workers: a send that cannot go
        # within this bound counts as an outage (stderr, then a retry later).
        sock.settimeout(SYSLOG_SEND_TIMEOUT)
        try:
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


class ReachabilityFlag:
    """Whether syslog is reachable, shared by a process and the workers it forks, with a
    race-free answer to "did I change it?": each state is a byte waiting in its own pipe, and
    a change takes that byte (a one-byte read succeeds in exactly one process) and puts the other.
    The one process that changed it announces the change."""

    def __init__(self) -> None:
        self.up_r, self.up_w = os.pipe()
        self.down_r, self.down_w = os.pipe()
        for fd in (self.up_r, self.up_w, self.down_r, self.down_w):
            os.set_blocking(fd, False)
        os.write(self.up_w, b"u")

    def change(self, down: bool) -> bool:
        """True when this call moved the state to ``down`` (False: already there, or another did)."""
        take, put = (self.up_r, self.down_w) if down else (self.down_r, self.up_w)
        try:
            if not os.read(take, 1):
                return False
        except (BlockingIOError, OSError):
            return False
        try:
            os.write(put, b"x")
        except OSError:
            pass
        return True

    def close(self) -> None:
        for fd in (self.up_r, self.up_w, self.down_r, self.down_w):
            try:
                os.close(fd)
            except OSError:
                pass


class StreamWriter:
    """Decision lines held in memory and written to the stream at once when the worker flushes
    (when its loop goes idle, else every FLUSH_INTERVAL): one write for many lines, even when
    the stream is unbuffered (PYTHONUNBUFFERED)."""

    MAX_PENDING = 256  # lines; a busy worker writes out at this many

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.pending: deque[str] = deque()
        self.second = -1
        self.second_text = ""

    def write(self, message: str, now: float) -> None:
        second = int(now)
        if second != self.second:  # strftime once per second, not per line
            self.second = second
            self.second_text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        # the layout of logging.Formatter(STDERR_FORMAT): "2026-11-25 00:17:32,123 INFO ..."
        self.pending.append(f"{self.second_text},{MILLISECONDS[int((now - second) * 1000)]} INFO {message}\n")
        if len(self.pending) >= self.MAX_PENDING:
            self.flush()

    def holding(self) -> bool:
        return bool(self.pending)

    def flush(self) -> None:
        pending = self.pending
        if not pending:
            return
        # Taken line by line (deque operations are atomic): a quota-notice thread logging through
        # the same handler flushes too, and a line written meanwhile must stay for the next flush.
        text = "".join([pending.popleft() for _ in range(len(pending))])
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed or full: as logging does, never fail a request over a log line


class SyslogWriter:
    """One datagram per decision line, framed as SyslogHandler frames it; while syslog is out of
    reach, the line goes to stderr as StderrHandler writes it."""

    def __init__(self, handler: SyslogHandler, fallback: DecisionWriter) -> None:
        self.send = handler.send
        self.fallback = fallback
        self.prefix = f"<{handler.priority(logging.INFO)}>apd[{os.getpid()}]: "  # built in the worker: its pid

    def write(self, message: str, now: float) -> None:
        if not self.send(f"{self.prefix}{message}\0".encode("utf-8", "replace")):
            self.fallback.write(message, now)

    def flush(self) -> None:
        self.fallback.flush()

    def holding(self) -> bool:
        return self.fallback.holding()


class LoggingWriter:
    """Any other handler (a test's, a custom one): the ordinary logging call."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def write(self, message: str, now: float) -> None:
        self.logger.info("%s", message)

    def flush(self) -> None:
        pass

    def holding(self) -> bool:
        return False


def decision_writer(logger: logging.Logger) -> DecisionWriter | None:
    """Where this worker's decision lines go; None when INFO is off (a worker's level never changes)."""
    if not logger.isEnabledFor(logging.INFO):
        return None
    handlers = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers += current.handlers
        current = current.parent if current.propagate else None
    if len(handlers) == 1 and hasattr(handlers[0], "decision_writer"):
        return handlers[0].decision_writer(logger)
    return LoggingWriter(logger)
