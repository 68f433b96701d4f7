"""apd's log handlers, and a fast path for the one INFO line per decision.

The logging module spends 40-60 us per record (record object, caller lookup, formatting,
a write and a flush), more than a whole request costs otherwise. Each handler here therefore
offers a ``decision_writer()`` that puts the decision line into the same place in the same
format without that machinery; every other message still goes through ``logging``.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys
import time
from typing import Any, Protocol

STDERR_FORMAT = "%(asctime)s %(levelname)s %(message)s"
SYSLOG_FORMAT = "apd[%(process)d]: %(message)s"
MILLISECONDS = tuple(f"{ms:03d}" for ms in range(1000))  # "000".."999": a lookup, not a format per line


class DecisionWriter(Protocol):
    def write(self, message: str, now: float) -> None: ...

    def flush(self) -> None: ...

    def holding(self) -> bool:
        """True while written lines wait for ``flush``."""
        ...


class StderrHandler(logging.StreamHandler):
    """``logging.StreamHandler`` on stderr with apd's line format."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter(STDERR_FORMAT))
        self.writer: StreamWriter | None = None

    def decision_writer(self, logger: logging.Logger) -> DecisionWriter:
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


class SyslogHandler(logging.handlers.SysLogHandler):
    """``logging.handlers.SysLogHandler`` with apd's tag (``apd[pid]: ``)."""

    def __init__(self, address: Any, facility: int) -> None:
        super().__init__(address=address, facility=facility)
        self.setFormatter(logging.Formatter(SYSLOG_FORMAT))

    def decision_writer(self, logger: logging.Logger) -> DecisionWriter:
        return SyslogWriter(self, logger)


class StreamWriter:
    """Decision lines held in memory and written to the stream at once when the worker flushes
    (when its loop goes idle, else every FLUSH_INTERVAL): one write for many lines, even when
    the stream is unbuffered (PYTHONUNBUFFERED)."""

    MAX_PENDING = 256  # lines; a busy worker writes out at this many

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.pending: list[str] = []
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
        if not self.pending:
            return
        text = "".join(self.pending)
        self.pending.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed or full: as logging does, never fail a request over a log line


class SyslogWriter:
    """One datagram per decision line, framed as SysLogHandler frames it (``<PRI>apd[pid]: msg\\0``)."""

    def __init__(self, handler: logging.handlers.SysLogHandler, logger: logging.Logger) -> None:
        self.handler = handler
        self.logger = logger
        priority = handler.encodePriority(handler.facility, handler.mapPriority("INFO"))
        self.prefix = f"<{priority}>{handler.ident}apd[{os.getpid()}]: "  # built in the worker: its pid

    def write(self, message: str, now: float) -> None:
        data = f"{self.prefix}{message}\0".encode("utf-8")
        handler = self.handler
        try:
            if handler.unixsocket:
                handler.socket.send(data)
            elif handler.socktype == socket.SOCK_DGRAM:
                handler.socket.sendto(data, handler.address)
            else:
                handler.socket.sendall(data)
        except (OSError, AttributeError):
            self.logger.info("%s", message)  # the handler reconnects or reports the error

    def flush(self) -> None:
        pass  # each line is already sent

    def holding(self) -> bool:
        return False


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
