"""A cheap Postfix-like load generator: many connections, one outstanding request each.

Each generator process drives its share of the connections with one ``selectors`` loop over
non-blocking sockets, so a few processes can keep hundreds of connections busy without threads.
Like Postfix, a connection sends one request and waits for the reply before sending the next.
In churn mode every request gets a fresh connection (connect, ask, close), like a Postfix smtpd
that exits after each client.
"""

from __future__ import annotations

import errno
import multiprocessing
import selectors
import socket
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

REPLY_END = b"\n\n"
CONNECT_TIMEOUT = 5.0
DRAIN_TIMEOUT = 3.0  # after the window closes, how long replies in flight may take
MAX_DURATION = 120.0  # no cell runs longer than this, whatever is asked

# One request sent again and again, or a mix: each connection cycles through the list, starting
# at its own place, so that every request of the mix is in flight at once.
Payload = Union[bytes, Sequence[bytes]]


@dataclass
class LoadResult:
    replies: int = 0  # replies counted inside the measurement window
    seconds: float = 0.0
    errors: int = 0  # refused / reset / closed connections, replies not starting with action=
    latencies_ns: array = field(default_factory=lambda: array("q"))
    first_reply: bytes = b""
    probes: tuple = ()  # (monotonic time, probe()) when the window opened and when it closed
    client_cpu: float = 0.0  # CPU seconds of the generator processes, warm-up and drain included
    client_replies: int = 0  # every reply they read, warm-up and drain included

    @property
    def rate(self) -> float:
        return self.replies / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """Latency in milliseconds at ``fraction`` (0.5 = median), nearest rank."""
        if not self.latencies_ns:
            return float("nan")
        ordered = sorted(self.latencies_ns)
        index = min(len(ordered) - 1, max(0, int(round(fraction * len(ordered))) - 1))
        return ordered[index] / 1e6

    def merge(self, other: "LoadResult") -> None:
        self.replies += other.replies
        self.errors += other.errors
        self.latencies_ns.extend(other.latencies_ns)
        self.client_cpu += other.client_cpu
        self.client_replies += other.client_replies
        self.first_reply = self.first_reply or other.first_reply


class _Conn:
    __slots__ = ("sock", "buffer", "sent_at", "turn")

    def __init__(self, sock: socket.socket, turn: int = 0):
        self.sock = sock
        self.buffer = b""
        self.sent_at = 0
        self.turn = turn  # the index of the next request of the mix


def requests_of(payload: Payload) -> list[bytes]:
    return [payload] if isinstance(payload, bytes) else list(payload)


def _open(address: tuple[str, int], blocking_connect: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if blocking_connect:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(address)
        sock.setblocking(False)
    else:
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(code, errno.errorcode.get(code, "connect failed"))
    return sock


def drive(
    address: tuple[str, int],
    connections: int,
    payload: Payload,
    measure_from: float,
    measure_until: float,
    churn: bool = False,
) -> LoadResult:
    """Run ``connections`` clients in this process until ``measure_until`` (time.monotonic()).

    Requests completed before ``measure_from`` are warm-up and not counted.
    """
    cpu_started = time.process_time()
    result = LoadResult(seconds=max(0.0, measure_until - measure_from))
    latencies = result.latencies_ns
    selector = selectors.DefaultSelector()
    now_ns = time.perf_counter_ns
    # Convert the monotonic window to the perf counter once; both are CLOCK_MONOTONIC-like here.
    offset = now_ns() - int(time.monotonic() * 1e9)
    start_ns = int(measure_from * 1e9) + offset
    end_ns = int(measure_until * 1e9) + offset
    hard_end_ns = end_ns + int(DRAIN_TIMEOUT * 1e9)
    active = 0
    mix = requests_of(payload)
    opened = 0

    def next_request(conn: _Conn) -> bytes:
        request = mix[conn.turn % len(mix)]
        conn.turn += 1
        return request

    def start_request(conn: _Conn) -> None:
        conn.sent_at = now_ns()
        conn.sock.send(next_request(conn))  # a request is far smaller than the socket buffer

    def begin(sock: socket.socket) -> None:
        nonlocal active, opened
        conn = _Conn(sock, opened)
        opened += 1
        active += 1
        if churn:  # the connect may still be in progress: wait until writable
            conn.sent_at = now_ns()
            selector.register(sock, selectors.EVENT_WRITE, conn)
        else:
            selector.register(sock, selectors.EVENT_READ, conn)
            start_request(conn)

    def finish(conn: _Conn) -> None:
        nonlocal active
        selector.unregister(conn.sock)
        conn.sock.close()
        active -= 1

    if not churn:
        # Persistent connections are opened before the clock starts, as Postfix keeps them open.
        for _ in range(connections):
            try:
                sock = _open(address, blocking_connect=True)
            except OSError:
                result.errors += 1
                continue
            selector.register(sock, selectors.EVENT_READ, _Conn(sock, opened))
            opened += 1
        for key in list(selector.get_map().values()):
            active += 1
            start_request(key.data)
    else:
        for _ in range(connections):
            try:
                begin(_open(address, blocking_connect=False))
            except OSError:
                result.errors += 1

    while active and now_ns() < hard_end_ns:
        for key, events in selector.select(0.5):
            conn = key.data
            if events & selectors.EVENT_WRITE:  # churn: connected (or failed)
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    result.errors += 1
                    finish(conn)
                    continue
                selector.modify(conn.sock, selectors.EVENT_READ, conn)
                try:
                    conn.sock.send(next_request(conn))  # sent_at stays at the connect: churn latency includes it
                except OSError:
                    result.errors += 1
                    finish(conn)
                continue
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                result.errors += 1
                finish(conn)
                continue
            conn.buffer += data
            if REPLY_END not in conn.buffer:
                continue
            done = now_ns()
            reply, _, conn.buffer = conn.buffer.partition(REPLY_END)
            result.client_replies += 1
            if not reply.startswith(b"action="):
                result.errors += 1
            elif start_ns <= done <= end_ns:
                result.replies += 1
                latencies.append(done - conn.sent_at)
                if not result.first_reply:
                    result.first_reply = reply
            if done > end_ns:
                finish(conn)
            elif churn:
                finish(conn)
                try:
                    begin(_open(address, blocking_connect=False))
                except OSError:
                    result.errors += 1
            else:
                try:
                    start_request(conn)
                except OSError:  # the server closed the connection after its reply
                    result.errors += 1
                    finish(conn)
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    selector.close()
    result.client_cpu = time.process_time() - cpu_started
    return result


def _child(pipe, *args) -> None:
    try:
        result = drive(*args)
        latencies = result.latencies_ns.tobytes()
        pipe.send(
            (result.replies, result.errors, latencies, result.first_reply, result.client_cpu, result.client_replies)
        )
    finally:
        pipe.close()


def run_load(
    address: tuple[str, int],
    connections: int,
    payload: Payload,
    duration: float = 4.0,
    warmup: float = 1.0,
    churn: bool = False,
    processes: int = 2,
    probe: Callable[[], Any] | None = None,
) -> LoadResult:
    """Drive ``connections`` clients from ``processes`` generator processes; return the merged result.

    ``probe`` (e.g. the server's CPU time so far) is called when the measurement window opens
    and when it closes; both values land in ``probes``.
    """
    duration = min(duration, MAX_DURATION)
    processes = max(1, min(processes, connections))
    shares = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    measure_from = time.monotonic() + 0.3 + warmup  # 0.3 s for the processes to start and connect
    measure_until = measure_from + duration
    context = multiprocessing.get_context("fork")
    children = []
    for share in shares:
        receiver, sender = context.Pipe(duplex=False)
        proc = context.Process(
            target=_child, args=(sender, address, share, payload, measure_from, measure_until, churn), daemon=True
        )
        proc.start()
        sender.close()
        children.append((proc, receiver))
    total = LoadResult(seconds=duration)
    if probe is not None:  # (time, value) pairs: on a busy machine this process may wake up late
        time.sleep(max(0.0, measure_from - time.monotonic()))
        opened = (time.monotonic(), probe())
        time.sleep(max(0.0, measure_until - time.monotonic()))
        total.probes = (opened, (time.monotonic(), probe()))
    deadline = measure_until + DRAIN_TIMEOUT + 10.0
    for proc, receiver in children:
        if receiver.poll(max(0.1, deadline - time.monotonic())):
            replies, errors, raw, first, cpu, handled = receiver.recv()
            part = LoadResult(replies=replies, errors=errors, first_reply=first, client_cpu=cpu, client_replies=handled)
            part.latencies_ns.frombytes(raw)
            total.merge(part)
        else:
            total.errors += 1
            proc.kill()
        proc.join(5)
        receiver.close()
    return total
