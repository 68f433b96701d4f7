"""The fast decision-line writers put out exactly what the logging module would, in the same order."""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import socket
import time

import pytest

from apd.decision_log import (
    STDERR_FORMAT,
    LoggingWriter,
    StderrHandler,
    StreamWriter,
    SyslogHandler,
    decision_writer,
)


class TextStream(io.StringIO):
    """Counts the writes that reach the stream."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def logger_with(handler: logging.Handler, name: str, level: int = logging.INFO) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    return logger


@pytest.mark.parametrize("now", [1764030000.0, 1764030000.5, 1764030000.999, 1764030059.0123])
def test_stream_line_is_the_logging_formatters_line(now: float) -> None:
    record = logging.LogRecord("apd.worker", logging.INFO, __file__, 1, "%s", ("[192.0.2.1] RCPT, a -> b",), None)
    record.created, record.msecs = now, int((now - int(now)) * 1000)
    expected = logging.Formatter(STDERR_FORMAT).format(record) + "\n"
    stream = TextStream()
    writer = StreamWriter(stream)
    writer.write("[192.0.2.1] RCPT, a -> b", now)
    assert stream.getvalue() == ""  # held until the worker flushes
    writer.flush()
    assert stream.getvalue() == expected


def test_lines_are_written_at_once_on_flush_and_bounded() -> None:
    stream = TextStream()
    writer = StreamWriter(stream)
    for i in range(10):
        writer.write(f"line {i}", time.time())
    writer.flush()
    writer.flush()  # nothing pending: no write
    assert stream.writes == 1
    assert stream.getvalue().count("\n") == 10
    for _ in range(StreamWriter.MAX_PENDING):
        writer.write("more", time.time())
    assert stream.writes == 2  # a long loop iteration does not hold lines without bound


def test_a_message_logged_meanwhile_comes_after_the_held_lines(monkeypatch) -> None:
    stream = TextStream()
    monkeypatch.setattr("sys.stderr", stream)
    handler = StderrHandler()
    logger = logger_with(handler, "apd.test_order")
    writer = decision_writer(logger)
    assert isinstance(writer, StreamWriter)
    writer.write("first decision", time.time())
    logger.warning("then a warning")
    writer.write("second decision", time.time())
    writer.flush()
    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 3)[3] for line in lines] == ["first decision", "then a warning", "second decision"]
    assert " WARNING " in lines[1] and " INFO " in lines[0]


def test_no_writer_when_info_is_off(monkeypatch) -> None:
    monkeypatch.setattr("sys.stderr", TextStream())
    logger = logger_with(StderrHandler(), "apd.test_level", logging.WARNING)
    assert decision_writer(logger) is None


def test_another_handler_gets_the_line_through_logging() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logger_with(handler, "apd.test_other")
    writer = decision_writer(logger)
    assert isinstance(writer, LoggingWriter)
    writer.write("a decision", time.time())
    assert stream.getvalue() == "a decision\n"


def test_syslog_datagram_is_the_sysloghandlers(tmp_path) -> None:
    path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        handler = SyslogHandler(path, logging.handlers.SysLogHandler.LOG_LOCAL3)
        logger = logger_with(handler, "apd.test_syslog")
        try:
            logger.info("%s", "[192.0.2.1] RCPT, a -> b, DUNNO")
            by_logging = server.recv(4096)
            decision_writer(logger).write("[192.0.2.1] RCPT, a -> b, DUNNO", time.time())
            by_writer = server.recv(4096)
        finally:
            handler.close()
    assert by_writer == by_logging == f"<158>apd[{os.getpid()}]: [192.0.2.1] RCPT, a -> b, DUNNO\0".encode()


def test_syslog_writer_falls_back_to_the_handler_when_sending_fails(tmp_path) -> None:
    path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        handler = SyslogHandler(path, logging.handlers.SysLogHandler.LOG_LOCAL5)
        logger = logger_with(handler, "apd.test_syslog_again")
        try:
            writer = decision_writer(logger)
            handler.socket.close()  # e.g. the syslog daemon restarted: the handler reconnects
            writer.write("after a reconnect", time.time())
            assert server.recv(4096).endswith(b"after a reconnect\0")
        finally:
            handler.close()
