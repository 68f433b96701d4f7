"""A small SMTP server on a thread that keeps every message it accepts (stdlib only: ``smtpd``
is gone from Python 3.12).

    sink = SmtpSink(users={"no-reply@example.com": "pw"}, tls=(cert, key)).start()
    sink.port                 # 127.0.0.1:<port>
    sink.wait_for(1)          # the Received messages, once that many arrived (or AssertionError)
    sink.messages             # [Received(mail_from, rcpt_to, data, login, tls)]
    sink.stop()

It speaks EHLO/HELO, STARTTLS (when given a certificate), AUTH PLAIN (when given users),
MAIL, RCPT, DATA, RSET, NOOP and QUIT: what smtplib uses. ``refuse = "451 4.3.0 Try later"``
makes it answer every MAIL FROM with that reply; ``silent = True`` accepts connections and
never says anything (a hung server).
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes
    login: str | None  # the AUTH PLAIN user, None without AUTH
    tls: bool


class SmtpSink:
    def __init__(self, users: dict[str, str] | None = None, tls: tuple[str, str] | None = None) -> None:
        self.users = users or {}
        self.tls_context: ssl.SSLContext | None = None
        if tls:
            self.tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls_context.load_cert_chain(*tls)
        self.refuse: str | None = None
        self.silent = False
        self.messages: list[Received] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []

    def start(self) -> "SmtpSink":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._listener.close()
        with self._lock:
            for conn in self._open:
                try:
                    conn.close()
                except OSError:
                    pass

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        raise AssertionError(f"{count} message(s) expected within {timeout} s, got {len(self.messages)}")

    # --- server side

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # stopped
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if not self.silent:
                _Session(self, conn).run()
            else:
                conn.recv(1)  # until the client gives up
        except (OSError, ValueError):
            pass  # the client went away
        finally:
            conn.close()

    def _keep(self, message: Received) -> None:
        with self._lock:
            self.messages.append(message)


class _Session:
    def __init__(self, sink: SmtpSink, conn: socket.socket) -> None:
        self.sink, self.conn = sink, conn
        self.reader: BinaryIO = conn.makefile("rb")
        self.tls = False
        self.login: str | None = None
        self.mail_from: str | None = None
        self.rcpt_to: list[str] = []

    def reply(self, text: str) -> None:
        self.conn.sendall(text.encode() + b"\r\n")

    def run(self) -> None:
        self.reply("220 sink.test ESMTP")
        while True:
            line = self.reader.readline()
            if not line:
                return
            verb, _, arg = line.decode().rstrip("\r\n").partition(" ")
            handler = getattr(self, "do_" + verb.upper(), None)
            if handler is None:
                self.reply("502 5.5.2 Unknown command")
            elif handler(arg) is False:
                return

    def do_EHLO(self, arg: str) -> None:
        lines = ["sink.test"]
        if self.sink.tls_context and not self.tls:
            lines.append("STARTTLS")
        if self.sink.users:
            lines.append("AUTH PLAIN")
        for line in lines[:-1]:
            self.reply("250-" + line)
        self.reply("250 " + lines[-1])

    def do_HELO(self, arg: str) -> None:
        self.reply("250 sink.test")

    def do_STARTTLS(self, arg: str) -> None:
        if not self.sink.tls_context or self.tls:
            self.reply("454 4.7.0 TLS not available")
            return
        self.reply("220 2.0.0 Ready to start TLS")
        self.conn = self.sink.tls_context.wrap_socket(self.conn, server_side=True)
        self.reader = self.conn.makefile("rb")
        self.tls = True

    def do_AUTH(self, arg: str) -> None:
        mechanism, _, initial = arg.partition(" ")
        if mechanism.upper() != "PLAIN" or not self.sink.users:
            self.reply("504 5.5.4 Unrecognized authentication type")
            return
        if not initial:
            self.reply("334 ")
            initial = self.reader.readline().decode().strip()
        _, user, password = base64.b64decode(initial).decode().split("\0")
        if self.sink.users.get(user) != password:
            self.reply("535 5.7.8 Authentication credentials invalid")
            return
        self.login = user
        self.reply("235 2.7.0 Authentication successful")

    def do_MAIL(self, arg: str) -> None:
        if self.sink.refuse:
            self.reply(self.sink.refuse)
            return
        self.mail_from, self.rcpt_to = _address(arg), []
        self.reply("250 2.1.0 Ok")

    def do_RCPT(self, arg: str) -> None:
        self.rcpt_to.append(_address(arg))
        self.reply("250 2.1.5 Ok")

    def do_DATA(self, arg: str) -> None:
        if self.mail_from is None or not self.rcpt_to:
            self.reply("503 5.5.1 Error: need MAIL and RCPT first")
            return
        self.reply("354 End data with <CR><LF>.<CR><LF>")
        lines = []
        while True:
            line = self.reader.readline()
            if line in (b".\r\n", b""):
                break
            lines.append(line[1:] if line.startswith(b"..") else line)
        self.sink._keep(Received(self.mail_from, tuple(self.rcpt_to), b"".join(lines), self.login, self.tls))
        self.mail_from, self.rcpt_to = None, []
        self.reply("250 2.0.0 Ok: queued")

    def do_RSET(self, arg: str) -> None:
        self.mail_from, self.rcpt_to = None, []
        self.reply("250 2.0.0 Ok")

    def do_NOOP(self, arg: str) -> None:
        self.reply("250 2.0.0 Ok")

    def do_QUIT(self, arg: str) -> bool:
        self.reply("221 2.0.0 Bye")
        return False


def _address(arg: str) -> str:
    """``FROM:<a@b> SIZE=1`` -> ``a@b``."""
    value = arg.partition(":")[2].strip()
    return value.split(">", 1)[0].lstrip("<")
