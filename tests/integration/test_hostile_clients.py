"""Issue 9, daemon items 1-4 against a real apd: clients that read no replies, slow clients,
thousands of descriptors, and SIGHUP under load keeping every connection."""

from __future__ import annotations

import os
import resource
import signal
import socket
import sqlite3
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from apd import replies
from tests.helpers.apd_process import ApdProcess
from tests.helpers.policy_client import PolicyClient, rcpt, request_bytes

NULL_SENDER = {"sender": "", "sasl_username": "u@example.com"}  # reject_null_sender answers this one


@pytest.fixture
def apd(apd_factory):
    return apd_factory


@pytest.fixture
def many_descriptors():
    """The test itself holds over a thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def timed_requests(proc: ApdProcess, count: int) -> list[float]:
    """Sequential requests on one connection; the latency of each, in seconds."""
    latencies = []
    with proc.client(timeout=20) as client:
        for _ in range(count):
            started = time.monotonic()
            assert client.ask(**rcpt(**NULL_SENDER)) == replies.REJECT_NULL_SENDER
            latencies.append(time.monotonic() - started)
    return latencies


def pipeline_without_reading(proc: ApdProcess) -> socket.socket:
    """A client that pipelines requests until the kernel takes no more, and never reads a reply."""
    sock = socket.create_connection((proc.host, proc.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    # An invalid sender is echoed in the reply: 3 KB replies fill the kernel's buffers after a few
    # thousand requests instead of hundreds of thousands.
    burst = request_bytes(**rcpt(sender="x" * 3000)) * 20
    offset = 0
    deadline = time.monotonic() + 30
    last_progress = time.monotonic()
    while time.monotonic() - last_progress < 1.0:  # until apd has stopped reading for a second
        assert time.monotonic() < deadline, "apd never stopped reading from a client that reads nothing"
        try:
            offset = (offset + sock.send(burst[offset:])) % len(burst)  # whole requests, back to back
            last_progress = time.monotonic()
        except BlockingIOError:
            time.sleep(0.05)
    return sock


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Read (and discard) until the server closes the connection, or give up after ``timeout``."""
    sock.setblocking(True)
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 20):
                return True
        except socket.timeout:
            continue
        except ConnectionResetError:
            return True
    return False


def test_clients_reading_no_replies_do_not_stall_others_even_past_descriptor_1024(apd, many_descriptors) -> None:
    proc = apd(workers=1, plugins=["reject_null_sender"], REQUEST_TIMEOUT=4)
    idle = [socket.create_connection((proc.host, proc.port)) for _ in range(1100)]  # the worker's fds pass 1024
    time.sleep(0.5)
    before = statistics.median(timed_requests(proc, 50))
    with ThreadPoolExecutor(9) as pool:  # the good client measures while the 8 others pipeline
        good = pool.submit(timed_requests, proc, 300)
        hostile = list(pool.map(lambda _: pipeline_without_reading(proc), range(8)))
        during = good.result() + timed_requests(proc, 300)
    # Before the fix each blocked reply stalled the only worker for up to 10 s.
    assert max(during) < 0.5, f"a good client waited {max(during):.2f} s"
    assert statistics.median(during) < max(0.02, 10 * before)
    time.sleep(4 + 2)  # REQUEST_TIMEOUT and the worker's once-a-second sweep; reading now would unblock them
    assert all(closed_by_server(sock, timeout=5) for sock in hostile)
    log = proc.log()
    assert "closed: slow reader: replies unread for 4 s" in log
    assert log.count("closed: slow reader") == 1  # once per address and minute; the other 7 suppressed
    assert "Traceback" not in log
    assert proc.proc.poll() is None
    with proc.client() as client:  # an idle connection of the first thousand still works
        client.sock.close()
    idle_client = PolicyClient.__new__(PolicyClient)
    idle_client.sock, idle_client.buffer = idle[-1], b""
    assert idle_client.ask(**rcpt(**NULL_SENDER)) == replies.REJECT_NULL_SENDER
    for sock in idle + hostile:
        sock.close()


def test_slow_clients_are_dropped_at_the_request_deadline_and_idle_ones_kept(apd) -> None:
    proc = apd(workers=1, plugins=["reject_null_sender"], REQUEST_TIMEOUT=2)
    idle = proc.client()
    slow = [socket.create_connection((proc.host, proc.port)) for _ in range(10)]
    stop = threading.Event()

    def trickle() -> None:  # a byte every 0.3 s: each byte used to reset the idle timer
        data = request_bytes(**rcpt())
        for i in range(len(data)):
            if stop.is_set():
                return
            for sock in slow:
                try:
                    sock.send(data[i : i + 1])
                except OSError:
                    pass
            time.sleep(0.3)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    latencies = timed_requests(proc, 20)
    assert all(closed_by_server(sock, timeout=6) for sock in slow)
    stop.set()
    thread.join()
    assert max(latencies) < 0.5
    assert idle.ask(**rcpt(**NULL_SENDER)) == replies.REJECT_NULL_SENDER  # idle 3 s > REQUEST_TIMEOUT: kept
    log = proc.log()
    assert log.count("closed: request timeout: request not complete 2 s after its first byte") == 1
    assert "Traceback" not in log
    idle.close()
    for sock in slow:
        sock.close()


class PersistentClients:
    """``count`` Postfix-like clients, each keeping one connection and asking one request at a time.

    A failed request is recorded with its time; the client then reconnects, as Postfix does.
    """

    def __init__(self, proc: ApdProcess, count: int):
        self.proc = proc
        self.failures: list[tuple[float, str]] = []
        self.answers: list[tuple[float, str]] = []
        self.connects = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def _run(self) -> None:
        client = None
        while not self._stop.is_set():
            try:
                if client is None:
                    client = PolicyClient(self.proc.host, self.proc.port, timeout=10)
                    with self._lock:
                        self.connects += 1
                reply = client.ask(**rcpt(**NULL_SENDER))
                with self._lock:
                    self.answers.append((time.monotonic(), reply))
            except OSError as exc:
                with self._lock:
                    self.failures.append((time.monotonic(), repr(exc)))
                if client is not None:
                    client.close()
                client = None
            time.sleep(0.01)
        if client is not None:
            client.close()

    def __enter__(self) -> "PersistentClients":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


def test_two_reloads_and_a_killed_worker_under_50_connections(apd) -> None:
    proc = apd(workers=2, plugins=["reject_null_sender"])
    with PersistentClients(proc, 50) as clients:
        time.sleep(1.0)
        assert clients.connects == 50
        proc.write_settings(plugins=[])
        proc.signal(signal.SIGHUP)
        time.sleep(1.5)
        reloaded_at = time.monotonic()
        victim = proc.worker_pids()[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        time.sleep(1.5)
        proc.write_settings(plugins=["reject_null_sender"])
        proc.signal(signal.SIGHUP)
        time.sleep(1.5)
        second_reload_at = time.monotonic()
        time.sleep(0.5)
    # Only requests in flight on the killed worker may fail, and each such client fails once.
    assert all(killed_at <= at <= killed_at + 1.0 for at, _ in clients.failures), clients.failures
    assert len(clients.failures) <= 50
    assert clients.connects == 50 + len(clients.failures)  # nobody else had to reconnect
    assert clients.failures, "the killed worker held none of the 50 connections"
    # Each reload took effect within a second: the check list changed the answers.
    no_checks = [a for t, a in clients.answers if reloaded_at - 0.5 <= t <= killed_at]
    assert no_checks and set(no_checks) == {replies.NO_ENABLED_PLUGINS}
    null_sender = [a for t, a in clients.answers if t >= second_reload_at]
    assert null_sender and set(null_sender) == {replies.REJECT_NULL_SENDER}
    assert "Traceback" not in proc.log()


def test_a_changed_greylisting_message_answers_within_a_second_on_the_same_connection(apd) -> None:
    proc = apd(workers=1, plugins=["greylisting"], GREYLISTING_MESSAGE="first text", GREYLISTING_BYPASS_SPF=False)
    db = sqlite3.connect(proc.settings["sqlite_db_path"])
    with db:
        db.execute(
            "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES ('@.', 0, '@.', 0, 1)"
        )
    db.close()
    with proc.client() as client:
        assert client.ask(**rcpt(sender="a@example.net")) == "451 4.7.1 first text"
        proc.write_settings(GREYLISTING_MESSAGE="second text")
        proc.signal(signal.SIGHUP)
        deadline = time.monotonic() + 1.0
        answer = ""
        while time.monotonic() < deadline and answer != "451 4.7.1 second text":
            answer = client.ask(**rcpt(sender=f"b{time.monotonic_ns()}@example.net"))
            time.sleep(0.02)
        assert answer == "451 4.7.1 second text"


def test_an_invalid_settings_file_on_reload_keeps_the_connections_and_the_running_settings(apd) -> None:
    proc = apd(workers=1, plugins=["reject_null_sender"])
    with proc.client() as client:
        assert client.ask(**rcpt(**NULL_SENDER)) == replies.REJECT_NULL_SENDER
        proc.write_settings(GREYLISTING_BLOCK_EXPIRE="soon")
        proc.signal(signal.SIGHUP)
        proc.wait_for_log("reload refused")
        assert client.ask(**rcpt(**NULL_SENDER)) == replies.REJECT_NULL_SENDER
    assert "GREYLISTING_BLOCK_EXPIRE = 'soon': expected minutes as an integer" in proc.log()
