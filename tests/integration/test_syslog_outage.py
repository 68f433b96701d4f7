"""A real apd logging to syslog that is missing or goes away under load: stderr gets the log,
one warning says so, and no traceback is printed (issue 9.5: 16 MB of tracebacks in 15 s).
And what a client sends cannot forge a log line."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.helpers.apd_process import ROOT, free_port, settings_text
from tests.helpers.policy_client import PolicyClient, rcpt, wait_for_port

CLIENTS, REQUESTS_EACH = 4, 75  # 300 requests


class SyslogApd:
    """``apd --log-to syslog`` with SYSLOG_SERVER = ``syslog_path``; its stderr kept in a file."""

    def __init__(self, workdir: Path, syslog_path: Path):
        self.port = free_port()
        settings = {
            "listen_address": "127.0.0.1",
            "listen_port": self.port,
            "sqlite_db_path": str(workdir / "apd.sqlite3"),
            "plugins": ["reject_null_sender"],
            "SYSLOG_SERVER": str(syslog_path),
            "run_as_user": pwd.getpwuid(os.getuid()).pw_name,
            "workers": 2,
        }
        (workdir / "settings.py").write_text(settings_text(settings))
        self.stderr_path = workdir / "stderr.log"
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "apd", "-c", str(workdir / "settings.py"), "--log-to", "syslog"],
                stderr=stderr,
                stdout=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        wait_for_port("127.0.0.1", self.port)

    def load(self, tag: str) -> None:
        """CLIENTS connections at once, REQUESTS_EACH requests on each; every one answered."""
        answers: list[str] = []

        def client(number: int) -> None:
            with PolicyClient("127.0.0.1", self.port) as conn:
                for i in range(REQUESTS_EACH):
                    answers.append(conn.ask(**rcpt(helo_name=f"{tag}-{number}-{i}.example.net")))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert answers == ["DUNNO"] * CLIENTS * REQUESTS_EACH

    def stop(self) -> str:
        """SIGTERM (the workers write what they hold), then what apd wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.stderr_path.read_text(errors="replace")


def test_no_syslog_socket_logs_to_stderr_with_one_warning(tmp_path) -> None:
    missing = tmp_path / "no-such-log-socket"
    apd = SyslogApd(tmp_path, missing)
    try:
        apd.load("missing")
        apd.proc.send_signal(signal.SIGHUP)  # each worker re-reads the settings: no warning again
        deadline = time.monotonic() + 10
        while "reloading settings" not in apd.stderr_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        apd.load("reloaded")
    finally:
        stderr = apd.stop()
    assert apd.proc.returncode == 0, stderr
    assert "reloading settings" in stderr
    assert stderr.count(f"WARNING syslog at {missing} unreachable: [Errno 2] No such file or directory;") == 1, stderr
    assert stderr.count("unreachable") == 1
    assert "Traceback" not in stderr, stderr[:3000]
    assert "INFO Starting apd" in stderr
    assert stderr.count(" INFO [192.0.2.10] RCPT, ") == 2 * CLIENTS * REQUESTS_EACH  # every decision line, on stderr


class SyslogReader(threading.Thread):
    """A syslog daemon on a unix datagram socket: keeps reading (apd blocks on a full socket, as
    with any syslog daemon) until stopped, then closes its socket."""

    def __init__(self, path: Path):
        super().__init__()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.received: list[bytes] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.received.append(self.sock.recv(65536))
            except TimeoutError:
                pass

    def count(self, text: bytes) -> int:
        return sum(text in message for message in self.received)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
        self.sock.close()


def test_syslog_going_away_under_load_is_said_once(tmp_path) -> None:
    path = tmp_path / "log.sock"
    syslog = SyslogReader(path)
    syslog.start()
    apd = SyslogApd(tmp_path, path)
    try:
        apd.load("before")
        deadline = time.monotonic() + 10
        while syslog.count(b"helo=before-") < CLIENTS * REQUESTS_EACH and time.monotonic() < deadline:
            time.sleep(0.05)
        syslog.stop()  # the syslog daemon stops: its socket file stays, nobody reads it
        apd.load("after")
    finally:
        syslog.stop()
        stderr = apd.stop()
    assert apd.proc.returncode == 0, stderr
    assert syslog.count(f"<174>apd[{apd.proc.pid}]: Starting apd".encode()) == 1  # local5.info
    assert syslog.count(b"helo=before-") == CLIENTS * REQUESTS_EACH
    assert stderr.count(f"WARNING syslog at {path} unreachable: [Errno 111] Connection refused;") == 1, stderr
    assert stderr.count("unreachable") == 1
    assert "Traceback" not in stderr, stderr[:3000]
    assert stderr.count("helo=after-") == CLIENTS * REQUESTS_EACH
    assert "helo=before-" not in stderr


def test_control_characters_from_a_client_are_escaped_in_every_log_line(apd_factory) -> None:
    """A value ends at a newline in the protocol, but a carriage return, an escape sequence or a
    C1 control (NEL) inside it reached the log as they were: a terminal or log viewer shows them."""
    apd = apd_factory(plugins=["reject_null_sender"])
    helo = "mail.example.net\r2026-01-01 00:00:00,000 INFO forged\x1b[2K\x85x"
    with apd.client() as client:
        answer = client.ask(**rcpt(sender="", sasl_username="u@example.com\rforged", helo_name=helo))
    assert answer == "REJECT Policy rejection due to null sender"
    apd.wait_for_log("check=reject_null_sender")
    log = apd.log_path.read_bytes().decode("utf-8")
    assert "Possible spam (authenticated as u@example.com\\x0dforged but sender address is null)." in log
    assert "helo=mail.example.net\\x0d2026-01-01 00:00:00,000 INFO forged\\x1b[2K\\x85x," in log
    assert not any(ch in log for ch in "\r\x1b\x85")
