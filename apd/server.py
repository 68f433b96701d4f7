"""Listening sockets (bound by the master, shared by every worker) and one client connection."""

from __future__ import annotations

import errno
import logging
import select
import socket
import socketserver
import time
from typing import Any, Callable

from apd.protocol import ProtocolError, RequestReader, format_reply

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn
IDLE_TIMEOUT = 330.0  # a little above Postfix's smtpd_policy_service_max_idle (300 s)
SEND_TIMEOUT = 10.0


class PolicyListener(socketserver.TCPServer):
    """Only binds and listens; the workers accept from it in their own selector loops."""

    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int]):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, socketserver.BaseRequestHandler, bind_and_activate=False)
        if self.address_family == socket.AF_INET6:
            # '::' would otherwise also take IPv4, clashing with an explicit IPv4 listener.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            self.server_bind()
            self.server_activate()
        except OSError:
            self.server_close()
            raise
        self.socket.setblocking(False)


def listen_addresses(listen_address: str) -> list[str]:
    """``listen_address`` may name several addresses: '127.0.0.1, ::1'."""
    return [part for part in listen_address.replace(",", " ").split() if part]


def bind_listeners(listen_address: str, port: int) -> list[PolicyListener]:
    listeners = []
    try:
        for address in listen_addresses(listen_address):
            listeners.append(PolicyListener((address.strip("[]"), port)))
    except OSError:
        for listener in listeners:
            listener.server_close()
        raise
    return listeners


class Connection:
    """One Postfix connection inside a worker: buffers input, answers complete requests in order."""

    def __init__(self, sock: socket.socket, peer: Any, reader: RequestReader, now: float):
        self.sock = sock
        self.peer = peer
        self.reader = reader
        self.last_active = now
        self.answered = 0
        sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def serve_ready(self, answer: Callable[[Any], str], now: float) -> bool:
        """Read what is there and answer every complete request. False: close the connection."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as exc:
            if exc.errno not in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT):
                log.warning("connection from %s: read error: %s", self.peer, exc)
            return False
        if not data:
            return False
        self.last_active = now
        try:
            requests = self.reader.feed(data)
        except ProtocolError as exc:
            log.warning("connection from %s closed: protocol error: %s", self.peer, exc)
            return False
        for request in requests:  # those completed before a breach are still answered
            action = answer(request)
            if action is None:
                return False
            if not self._send(format_reply(action)):
                return False
            self.answered += 1
        if self.reader.error is not None:
            log.warning("connection from %s closed: protocol error: %s", self.peer, self.reader.error)
            return False
        return True

    def _send(self, payload: bytes) -> bool:
        try:
            sent = self.sock.send(payload)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return False
        # A reply is small: it nearly always goes in one send, the rest waits for the client.
        return sent == len(payload) or self._send_rest(payload[sent:])

    def _send_rest(self, payload: bytes) -> bool:
        deadline = time.monotonic() + SEND_TIMEOUT
        view = memoryview(payload)
        while view:
            try:
                sent = self.sock.send(view)
                view = view[sent:]
            except (BlockingIOError, InterruptedError):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("connection from %s closed: client does not read replies", self.peer)
                    return False
                select.select([], [self.sock], [], remaining)
            except OSError:
                return False
        return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
