"""Log lines: client values cannot forge a line; syslog out of reach falls back to stderr, said once."""

from __future__ import annotations

import io
import logging
import os
import socket
import time

import pytest

from apd.decision_log import (
    ReachabilityFlag,
    StderrHandler,
    StreamWriter,
    SyslogHandler,
    SyslogWriter,
    decision_writer,
)
from apd.log_escape import escape_controls
from apd.policy import Decision, describe
from apd.protocol import PolicyRequest
from tests.helpers.policy_client import rcpt

LOCAL5 = 21
FORGED = "2026-01-01 00:00:00,000 INFO [192.0.2.1] RCPT, boss@example.com -> you@example.com, OK"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("mail.example.net", "mail.example.net"),
        ("a\nb", "a\\x0ab"),
        ("a\r\nb", "a\\x0d\\x0ab"),
        ("tab\there", "tab\\x09here"),
        ("\x00\x1b[31m\x7f", "\\x00\\x1b[31m\\x7f"),
        ("c1\x85\x9f", "c1\\x85\\x9f"),
        ("müller €\u00a0ok", "müller €\u00a0ok"),  # printable non-ASCII (and NBSP) stays as it is
        ("ü\n", "ü\\x0a"),
        ("line\u2028sep\u2029para", "line\\u2028sep\\u2029para"),  # str.splitlines breaks there
        ("", ""),
    ],
)
def test_escape_controls(text: str, expected: str) -> None:
    assert escape_controls(text) == expected


def decision_line(**attrs: str) -> str:
    return describe(PolicyRequest.build(rcpt(**attrs)), Decision("DUNNO", "", 0.5))


@pytest.mark.parametrize("name", ["sender", "helo_name", "client_name", "reverse_client_name", "sasl_username"])
def test_a_client_value_with_a_newline_cannot_start_a_log_line(name: str) -> None:
    value = f"x@example.com\n{FORGED}" if name in ("sender", "sasl_username") else f"x\n{FORGED}"
    line = decision_line(**{name: value})
    stream = io.StringIO()
    writer = StreamWriter(stream)
    writer.write(line, time.time())
    writer.flush()
    written = stream.getvalue().splitlines()
    assert len(written) == 1, written
    assert "\\x0a2026-01-01" in written[0]
    assert decision_line() == describe(PolicyRequest.build(rcpt()), Decision("DUNNO", "", 0.5))  # clean: unchanged


def test_messages_through_the_handlers_are_escaped_but_a_traceback_keeps_its_lines(monkeypatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logger = only_handler(StderrHandler(), "apd.test_escaped")
    logger.info("[%s] Client passed greylisting (%s).", "192.0.2.1", f"example.com\r\n{FORGED}")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("check failed for %s", "a\nb")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith(f"(example.com\\x0d\\x0a{FORGED}).")
    assert lines[1].endswith("ERROR check failed for a\\x0ab")
    assert lines[2] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"


def test_a_client_value_in_an_exception_cannot_start_a_log_line(monkeypatch) -> None:
    """An exception text carries what a client sent (KeyError('<recipient>')): escaped in the
    traceback, whose own lines stay, for the chained exception too."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logger = only_handler(StderrHandler(), "apd.test_escaped_traceback")
    try:
        try:
            raise KeyError(f"x@example.com\n{FORGED}")
        except KeyError as exc:
            raise RuntimeError(f"lookup of \x1b[31m{FORGED}") from exc
    except RuntimeError:
        logger.exception("check failed")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("ERROR check failed")
    assert not any(line.startswith(FORGED[:10]) for line in lines)
    assert f"KeyError: 'x@example.com\\n{FORGED}'" in lines  # repr() of a KeyError escapes already
    assert lines[-1] == f"RuntimeError: lookup of \\x1b[31m{FORGED}"
    assert lines.count("Traceback (most recent call last):") == 2
    assert "The above exception was the direct cause of the following exception:" in lines
    assert any(
        line.startswith('  File "') and line.endswith("in test_a_client_value_in_an_exception_cannot_start_a_log_line")
        for line in lines
    )

    stream.truncate(0)
    stream.seek(0)
    try:
        raise ValueError(f"bad\n{FORGED}")
    except ValueError:
        logger.exception("again")
    lines = stream.getvalue().splitlines()
    assert lines[-1] == f"ValueError: bad\\x0a{FORGED}"


def only_handler(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Captured:
    """What reached sys.stderr so far (capsys swaps sys.stderr at each test phase: read it here)."""

    def __init__(self, capsys) -> None:
        self.capsys = capsys
        self.text = ""

    def getvalue(self) -> str:
        self.text += self.capsys.readouterr().err
        return self.text


@pytest.fixture
def stderr(capsys) -> Captured:
    return Captured(capsys)


def datagram_server(path: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    return server


def test_missing_syslog_socket_logs_to_stderr_with_one_warning_then_reconnects(tmp_path, stderr) -> None:
    path = str(tmp_path / "log.sock")
    clock = Clock()
    handler = SyslogHandler(path, LOCAL5, retry_seconds=30, clock=clock)
    logger = only_handler(handler, "apd.test_missing_syslog")
    writer = decision_writer(logger)
    assert isinstance(writer, SyslogWriter)
    try:
        for i in range(50):
            logger.warning("warning %d", i)
            writer.write(f"decision {i}", time.time())
        writer.flush()
        text = stderr.getvalue()
        assert text.count(f"WARNING syslog at {path} unreachable: [Errno 2] No such file or directory;") == 1
        assert text.count("logging to stderr") == 1
        assert "Traceback" not in text
        assert text.count(" INFO decision ") == 50 and text.count(" WARNING warning ") == 50
        with datagram_server(path) as server:
            clock.now += 29
            logger.warning("still on stderr")  # no retry before retry_seconds
            assert "still on stderr" in stderr.getvalue()
            clock.now += 1
            logger.warning("back in syslog")
            assert (
                server.recv(4096)
                == f"<{LOCAL5 * 8 + 4}>apd[{os.getpid()}]: syslog at {path} reachable again; logging to syslog\0".encode()
            )
            assert server.recv(4096) == f"<{LOCAL5 * 8 + 4}>apd[{os.getpid()}]: back in syslog\0".encode()
            writer.write("a decision", time.time())
            assert server.recv(4096) == f"<{LOCAL5 * 8 + 6}>apd[{os.getpid()}]: a decision\0".encode()
        assert stderr.getvalue().count("reachable again; logging to syslog") == 1
        assert "back in syslog" not in stderr.getvalue()
    finally:
        handler.close()


def test_syslog_going_away_is_said_once_and_a_restarted_daemon_is_found_again(tmp_path, stderr) -> None:
    path = str(tmp_path / "log.sock")
    clock = Clock()
    server = datagram_server(path)
    handler = SyslogHandler(path, LOCAL5, retry_seconds=30, clock=clock)
    logger = only_handler(handler, "apd.test_syslog_away")
    writer = decision_writer(logger)
    try:
        writer.write("before", time.time())
        assert server.recv(4096).endswith(b"before\0")
        server.close()  # the daemon stopped; the path stays
        for i in range(100):
            writer.write(f"during {i}", time.time())
            logger.error("error %d", i)
        writer.flush()
        text = stderr.getvalue()
        assert text.count("unreachable") == 1 and "Traceback" not in text
        assert text.count(" INFO during ") == 100 and text.count(" ERROR error ") == 100
        os.unlink(path)
        server = datagram_server(path)  # restarted: a new socket at the same path
        clock.now += 30
        writer.write("after", time.time())
        assert server.recv(4096).endswith(b"reachable again; logging to syslog\0")
        assert server.recv(4096).endswith(b"after\0")
    finally:
        server.close()
        handler.close()


def test_a_restarted_daemon_is_reconnected_at_once_without_a_warning(tmp_path, stderr) -> None:
    path = str(tmp_path / "log.sock")
    server = datagram_server(path)
    handler = SyslogHandler(path, LOCAL5)
    logger = only_handler(handler, "apd.test_syslog_restart")
    try:
        server.close()
        os.unlink(path)
        server = datagram_server(path)
        logger.info("after a restart")
        assert server.recv(4096).endswith(b"after a restart\0")
        assert stderr.getvalue() == ""
    finally:
        server.close()
        handler.close()


def test_remote_syslog_over_udp_and_an_address_that_does_not_resolve(stderr) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        handler = SyslogHandler(("127.0.0.1", server.getsockname()[1]), LOCAL5)
        try:
            only_handler(handler, "apd.test_syslog_udp").info("over udp")
            assert server.recv(4096) == f"<{LOCAL5 * 8 + 6}>apd[{os.getpid()}]: over udp\0".encode()
        finally:
            handler.close()
    # getaddrinfo fails without asking DNS (a service name no UDP service has): as a name that does not resolve
    handler = SyslogHandler(("127.0.0.1", "no-such-service"), LOCAL5)  # type: ignore[arg-type]
    try:
        only_handler(handler, "apd.test_syslog_host").info("a line")
        text = stderr.getvalue()
        assert text.count("syslog at 127.0.0.1:no-such-service unreachable: [Errno -8]") == 1
        assert " INFO a line" in text and "Traceback" not in text
    finally:
        handler.close()


def test_only_one_process_reports_a_change() -> None:
    flag = ReachabilityFlag()
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0 if flag.change(down=True) else 1)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0  # the child saw it first
        assert not flag.change(down=True)  # the parent: already reported
        assert flag.change(down=False)
        assert not flag.change(down=False)
        assert flag.change(down=True)
    finally:
        flag.close()


def test_a_message_too_long_for_a_datagram_goes_to_stderr_alone(tmp_path, stderr) -> None:
    path = str(tmp_path / "log.sock")
    with datagram_server(path) as server:
        handler = SyslogHandler(path, LOCAL5)
        logger = only_handler(handler, "apd.test_syslog_long")
        try:
            logger.info("%s", "x" * 1_000_000)
            logger.info("short")
            assert server.recv(4096).endswith(b"short\0")
        finally:
            handler.close()
    text = stderr.getvalue()
    assert "x" * 1_000_000 in text and "unreachable" not in text


def test_a_line_written_while_another_thread_flushes_is_not_lost() -> None:
    """The notice thread logs (and so flushes) while the worker writes decision lines."""
    import io
    import threading

    from apd.decision_log import StreamWriter

    stream = io.StringIO()
    writer = StreamWriter(stream)
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            writer.flush()

    thread = threading.Thread(target=flusher)
    thread.start()
    for i in range(20000):
        writer.write(f"line {i}", 1_700_000_000.5)
    stop.set()
    thread.join()
    writer.flush()
    assert stream.getvalue().count("\n") == 20000


def test_a_syslog_daemon_that_stops_reading_costs_a_bounded_wait_then_stderr(tmp_path, stderr) -> None:
    path = str(tmp_path / "log.sock")
    with datagram_server(path) as server:  # bound, never read: its queue fills up
        handler = SyslogHandler(path, LOCAL5, retry_seconds=30, clock=Clock())
        logger = only_handler(handler, "apd.test_stalled_syslog")
        try:
            started = time.monotonic()
            for i in range(2000):
                logger.warning("line %d %s", i, "x" * 200)
            assert time.monotonic() - started < 3  # blocked for good before the bound
            text = stderr.getvalue()
            assert text.count("unreachable") == 1 and "logging to stderr" in text
            assert "line 1999" in text
        finally:
            handler.close()
        assert server.recv(4096).startswith(b"<")
