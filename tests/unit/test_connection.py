"""server.Connection on a socketpair: replies never block, deadlines, bounded buffers (issue 9, 1-3);
drop_log.DropLog: drops counted, logged once per address and window."""

from __future__ import annotations

import socket

import pytest

from apd.drop_log import DropLog
from apd.protocol import RequestReader
from apd.server import OUTBOX_LIMIT, OUTBOX_PAUSE, PENDING_PAUSE, Connection

REQUEST = b"request=smtpd_access_policy\nprotocol_state=RCPT\nsender=a@example.net\nrecipient=b@example.com\n\n"


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    # A small send buffer: a client that reads nothing fills it after a few replies.
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    yield ours, theirs
    ours.close()
    theirs.close()


def connection(sock: socket.socket, now: float = 0.0, timeout: float = 30.0) -> Connection:
    return Connection(sock, ("192.0.2.1", 4000), RequestReader(), now, timeout)


def answer_all(conn: Connection, now: float, action: str = "DUNNO") -> None:
    while conn.can_answer():
        assert conn.answer_pending(lambda request: action, now) is None


def test_a_client_reading_nothing_fills_only_its_outbox_and_never_blocks(pair) -> None:
    ours, theirs = pair
    theirs.setblocking(False)
    conn = connection(ours)
    sent = 0
    while conn.wants_input():  # the client pipelines requests and reads no reply
        try:
            theirs.send(REQUEST * 50)
            sent += 50
        except BlockingIOError:
            pass
        assert conn.receive(now=1.0) is None
        answer_all(conn, now=1.0)
    # Reading stopped with a bounded amount owed; nothing blocked to get here.
    assert OUTBOX_PAUSE <= len(conn.outbox) < OUTBOX_PAUSE + 16 * 100
    assert len(conn.pending) < PENDING_PAUSE + 200
    assert conn.stalled_since == 1.0
    assert conn.expired(now=1.0 + 29) is None
    drop = conn.expired(now=1.0 + 31)
    assert drop is not None and drop.reason == "slow reader"


def test_replies_owed_go_out_as_the_client_reads_and_reading_resumes(pair) -> None:
    ours, theirs = pair
    conn = connection(ours)
    theirs.sendall(REQUEST * 300)
    while conn.receive(now=1.0) is None and (conn.pending or conn.reader.in_request) and conn.wants_input():
        answer_all(conn, 1.0)
        if not conn.wants_input():
            break
    answer_all(conn, 1.0)
    received = b""
    theirs.settimeout(1)
    while received.count(b"\n\n") < 300:
        received += theirs.recv(65536)
        assert conn.send(now=2.0) is None
        answer_all(conn, 2.0)
        if conn.wants_input():
            conn.receive(now=2.0)
    assert received == b"action=DUNNO\n\n" * 300
    assert conn.answered == 300
    assert not conn.outbox and conn.stalled_since is None


def test_outbox_over_its_hard_bound_drops_the_connection(pair) -> None:
    ours, _ = pair
    conn = connection(ours)
    conn.outbox += b"x" * (2 * OUTBOX_LIMIT)  # more than the socket buffers take at once
    drop = conn.send(now=1.0)
    assert drop is not None and drop.reason == "slow reader"


def test_a_request_must_complete_within_the_deadline_from_its_first_byte(pair) -> None:
    ours, theirs = pair
    conn = connection(ours, now=0.0, timeout=30.0)
    for second, byte in enumerate(REQUEST[:20]):  # one byte at a time: each byte used to reset the timer
        theirs.send(bytes([byte]))
        assert conn.receive(now=float(second)) is None
        assert conn.expired(now=float(second)) is None
    assert conn.request_started == 0.0
    drop = conn.expired(now=30.5)
    assert drop is not None and drop.reason == "request timeout"


def test_the_deadline_restarts_with_each_request(pair) -> None:
    ours, theirs = pair
    conn = connection(ours, now=0.0, timeout=30.0)
    theirs.send(REQUEST + REQUEST[:10])  # one whole request and the start of the next
    assert conn.receive(now=20.0) is None
    answer_all(conn, 20.0)
    assert conn.request_started == 20.0
    assert conn.expired(now=45.0) is None
    assert conn.expired(now=50.5).reason == "request timeout"


def test_idle_between_requests_is_allowed_as_long_as_postfix_idles(pair) -> None:
    ours, theirs = pair
    conn = connection(ours, now=0.0, timeout=30.0)
    theirs.send(REQUEST)
    conn.receive(now=1.0)
    answer_all(conn, 1.0)
    assert conn.expired(now=300.0) is None  # Postfix keeps an idle policy connection 300 s
    drop = conn.expired(now=340.0)
    assert drop is not None and drop.quiet


def test_empty_lines_do_not_keep_a_connection_alive(pair) -> None:
    ours, theirs = pair
    conn = connection(ours, now=0.0)
    for second in (100, 200, 300):
        theirs.send(b"\n")  # an empty request is answered but is no sign of life
        conn.receive(now=float(second))
        answer_all(conn, float(second))
    assert conn.answered == 3
    assert conn.expired(now=331.0) is not None


def test_a_protocol_breach_answers_what_came_before_then_closes(pair) -> None:
    ours, theirs = pair
    conn = connection(ours)
    theirs.send(REQUEST + b"x" * 5000 + b"\n")
    assert conn.receive(now=1.0) is None
    assert not conn.wants_input()
    drop = conn.answer_pending(lambda request: "DUNNO", 1.0)
    assert drop is not None and drop.reason == "protocol error" and "longer than" in drop.detail
    assert theirs.recv(100) == b"action=DUNNO\n\n"


def test_a_request_without_protocol_state_closes_without_a_reply(pair) -> None:
    ours, theirs = pair
    conn = connection(ours)
    theirs.send(b"sender=a@example.net\n\n" + REQUEST)
    conn.receive(now=1.0)
    drop = conn.answer_pending(lambda request: None, 1.0)
    assert drop is not None and drop.detail == "request without protocol_state"
    assert not conn.pending and not conn.outbox


def test_answers_per_turn_are_bounded_so_other_connections_get_theirs(pair) -> None:
    ours, theirs = pair
    conn = connection(ours)
    theirs.sendall(REQUEST * 40)
    conn.receive(now=1.0)
    calls = []
    conn.answer_pending(lambda request: calls.append(request) or "DUNNO", 1.0)
    assert 0 < len(calls) < 40
    assert conn.can_answer()


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, fmt: str, *args) -> None:
        self.lines.append(fmt % args)


def test_drops_are_logged_once_per_address_and_minute_with_a_suppressed_count() -> None:
    log = RecordingLog()
    drops = DropLog(log, window=60.0)
    for i in range(50):
        drops.record("192.0.2.7", "request timeout", "too slow", now=float(i))
    drops.record("192.0.2.8", "protocol error", "line longer than 4096 bytes", now=10.0)
    assert drops.counts == {"request timeout": 50, "protocol error": 1}
    assert log.lines == [
        "connection from 192.0.2.7 closed: request timeout: too slow",
        "connection from 192.0.2.8 closed: protocol error: line longer than 4096 bytes",
    ]
    drops.record("192.0.2.7", "request timeout", "too slow", now=61.0)
    assert log.lines[-1] == (
        "connection from 192.0.2.7 closed: request timeout: too slow (suppressed 49 similar messages from this address)"
    )
    drops.record("192.0.2.7", "request timeout", "too slow", now=62.0)
    drops.sweep(now=130.0)
    assert log.lines[-1] == "connections from 192.0.2.7: 1 more dropped in the last 60 s (not logged one by one)"
    assert len(log.lines) == 4


def test_a_flood_from_many_addresses_is_summed_up() -> None:
    log = RecordingLog()
    drops = DropLog(log, window=60.0, max_peers=100)
    for i in range(1000):
        drops.record(f"10.0.{i // 256}.{i % 256}", "protocol error", "", now=1.0)
    assert len(log.lines) == 100
    drops.sweep(now=2.0)
    assert log.lines[-1] == "900 connections dropped from more than 100 addresses (not logged one by one)"
    assert drops.counts["protocol error"] == 1000


def test_a_client_that_half_closes_still_gets_every_reply(pair) -> None:
    ours, theirs = pair
    conn = connection(ours)
    theirs.sendall(REQUEST * 100)
    theirs.shutdown(socket.SHUT_WR)
    assert conn.receive(now=1.0) is None
    assert conn.answer_pending(lambda request: "DUNNO", 1.0) is None  # one turn: 16 of 100 answered
    assert conn.receive(now=1.0) is None  # the end of input, with 84 requests still to answer
    assert not conn.wants_input()
    received = b""
    drop = None
    theirs.settimeout(1)
    while drop is None:
        drop = conn.answer_pending(lambda request: "DUNNO", 1.0) if conn.can_answer() else conn.send(now=1.0)
        if conn.outbox:
            received += theirs.recv(65536)
    received += theirs.recv(65536)
    assert received == b"action=DUNNO\n\n" * 100
    assert drop.quiet
