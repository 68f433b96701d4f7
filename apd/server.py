"""Listening sockets (bound by the master, shared by every worker) and one client connection."""

from __future__ import annotations

import errno
import socket
import socketserver
from collections import deque
from typing import Any, Callable

from apd.protocol import PolicyRequest, ProtocolError, RequestReader, format_reply

LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn
IDLE_TIMEOUT = 330.0  # between requests: a little above Postfix's smtpd_policy_service_max_idle (300 s)
RECV_SIZE = 16384
# A client reading no replies: stop reading its requests once this much is owed or this many
# requests wait, so one connection cannot hold more than a bounded amount of memory.
OUTBOX_PAUSE = 16384
PENDING_PAUSE = 256
OUTBOX_LIMIT = 1 << 20
ANSWERS_PER_TURN = 16  # then the other ready connections get their turn


POLICY = "policy"  # the service of the policy port; the SRS ports name theirs (apd/srs/service.py)


class PolicyListener(socketserver.TCPServer):
    """Only binds and listens; the workers accept from it in their own selector loops.
    ``service`` says which protocol its connections speak."""

    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], service: str = POLICY):
        self.service = service
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


def bind_listeners(listen_address: str, port: int, service: str = POLICY) -> list[PolicyListener]:
    listeners = []
    try:
        for address in listen_addresses(listen_address):
            listeners.append(PolicyListener((address.strip("[]"), port), service))
    except OSError:
        for listener in listeners:
            listener.server_close()
        raise
    return listeners


class Connection:
    """One Postfix connection inside a worker. Nothing here blocks.

    Input is parsed into ``pending`` requests; their replies go to ``outbox`` and leave as fast
    as the client reads them. A client that pipelines requests and reads no replies fills only
    its own outbox: the worker stops reading from it at OUTBOX_PAUSE and drops it when the
    outbox has not moved for ``request_timeout`` (or, after one burst, exceeds OUTBOX_LIMIT).

    Methods return None to keep the connection, or why to close it (``Drop``).
    """

    __slots__ = (
        "sock",
        "peer",
        "reader",
        "request_timeout",
        "last_active",
        "request_started",
        "stalled_since",
        "pending",
        "outbox",
        "closing",
        "answered",
        "events",
        "service",
        "encode",
    )

    def __init__(
        self,
        sock: socket.socket,
        peer: Any,
        reader: RequestReader,
        now: float,
        request_timeout: float,
        service: str = POLICY,
        encode: Callable[[Any], bytes] = format_reply,
    ):
        self.sock = sock
        self.service = service  # the listener's: which answer its requests get
        self.encode = encode  # an answer as the reply bytes of this protocol
        self.peer = peer
        self.reader = reader
        self.request_timeout = request_timeout
        self.last_active = now  # accepted, or the last non-empty request completed
        self.request_started: float | None = None  # first byte of an unfinished request
        self.stalled_since: float | None = None  # the outbox stopped moving
        self.pending: deque[PolicyRequest] = deque()
        self.outbox = bytearray()
        self.closing: Drop | None = None  # close once the replies owed have gone
        self.answered = 0
        self.events = 0  # selector interest, kept by the worker
        sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def peer_address(self) -> str:
        return str(self.peer[0]) if isinstance(self.peer, tuple) and self.peer else str(self.peer or "?")

    def wants_input(self) -> bool:
        return self.closing is None and len(self.outbox) < OUTBOX_PAUSE and len(self.pending) < PENDING_PAUSE

    def can_answer(self) -> bool:
        return bool(self.pending) and len(self.outbox) < OUTBOX_PAUSE

    def busy(self) -> bool:
        """Part of a request, a request or a reply is still under way."""
        return bool(self.pending or self.outbox) or self.reader.in_request

    def receive(self, now: float) -> Drop | None:
        """Read what is there into ``pending``."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT):
                return Drop.gone()
            return Drop("read error", str(exc))
        if not data:  # the client is done sending; what it asked before still gets its replies
            if not self.pending and not self.outbox:
                return Drop.gone()
            self.closing = Drop.gone()
            return None
        reader = self.reader
        try:
            requests = reader.feed(data)
        except ProtocolError as exc:
            return Drop("protocol error", str(exc))
        if requests:
            self.pending.extend(requests)
            self.request_started = now if reader.in_request else None
        elif self.request_started is None:
            self.request_started = now
        if reader.error is not None:  # the requests completed before the breach are still answered
            self.closing = Drop("protocol error", str(reader.error))
        return None

    def answer_pending(self, answer: Callable[[Any], Any], now: float) -> Drop | None:
        """Answer up to ANSWERS_PER_TURN pending requests while the outbox has room, then send."""
        pending = self.pending
        replies = []
        for _ in range(ANSWERS_PER_TURN):
            if not pending or len(self.outbox) >= OUTBOX_PAUSE:
                break
            request = pending.popleft()
            action = answer(request)
            if action is None:
                pending.clear()
                self.closing = Drop("protocol error", "request without protocol_state")
                break
            replies.append(self.encode(action))
            self.answered += 1
            if not request.empty:
                self.last_active = now
        if replies:
            self.outbox += b"".join(replies) if len(replies) > 1 else replies[0]
        return self.send(now)

    def send(self, now: float) -> Drop | None:
        outbox = self.outbox
        if outbox:
            try:
                sent = self.sock.send(outbox)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                return Drop.gone()
            if sent:
                del outbox[:sent]
                self.stalled_since = now if outbox else None
            elif self.stalled_since is None:
                self.stalled_since = now
            if len(outbox) > OUTBOX_LIMIT:
                return Drop("slow reader", f"over {OUTBOX_LIMIT} bytes of replies unread")
        if self.closing is not None and not outbox and not self.pending:
            return self.closing
        return None

    def expired(self, now: float) -> Drop | None:
        """Checked about once a second by the worker."""
        if self.outbox and self.stalled_since is not None and now - self.stalled_since > self.request_timeout:
            return Drop("slow reader", f"replies unread for {self.request_timeout:g} s")
        if self.request_started is not None and now - self.request_started > self.request_timeout:
            return Drop("request timeout", f"request not complete {self.request_timeout:g} s after its first byte")
        if not self.busy() and now - self.last_active > IDLE_TIMEOUT:
            return Drop.gone()  # idle as long as Postfix would keep it: not a breach
        return None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Drop:
    """Why a connection closes: ``reason`` names the kind (counted), ``detail`` says more.
    A ``quiet`` drop is the ordinary end of a connection and is neither counted nor logged."""

    __slots__ = ("reason", "detail", "quiet")

    def __init__(self, reason: str, detail: str = "", quiet: bool = False):
        self.reason = reason
        self.detail = detail
        self.quiet = quiet

    @classmethod
    def gone(cls) -> "Drop":
        return cls("closed", quiet=True)

    def __repr__(self) -> str:
        return f"Drop({self.reason!r}, {self.detail!r})"
