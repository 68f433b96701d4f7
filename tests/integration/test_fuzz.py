"""Bounded fuzzing of a real apd (issue 9): random and mutated requests, huge lines, NUL, bad UTF-8,
half requests, resets, pipelined bursts, clients that read nothing or stall — while a good client
checks every answer. Seeded: a failure names its seed (APD_FUZZ_SEED reproduces it)."""

from __future__ import annotations

import os
import random
import re
import socket
import struct
import threading
import time

import pytest

from apd import replies
from tests.helpers.apd_process import ApdProcess
from tests.helpers.policy_client import PolicyClient, rcpt, request_bytes

SEED = int(os.environ.get("APD_FUZZ_SEED", "0")) or random.randrange(1, 1 << 30)
FUZZ_SECONDS = 20.0
FUZZ_THREADS = 6
PLUGINS = ["reject_null_sender", "wblist_rdns", "greylisting", "amavisd_wblist"]
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [^\x00-\x1f\x7f]*$")
GOOD = [  # (request, the one right answer)
    (rcpt(sender="", sasl_username="u@example.com"), replies.REJECT_NULL_SENDER),
    (rcpt(sender="someone@example.net", recipient="user@example.com"), "DUNNO"),
    (rcpt(sender="bad address@"), "DUNNO Error: Invalid sender address: bad address@"),
]


def mutate(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        kind = rng.randrange(9)
        at = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)  # flip a byte
        elif kind == 1:
            data[at:at] = b"\x00"
        elif kind == 2:
            data[at:at] = rng.choice([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"])  # not UTF-8
        elif kind == 3:
            data[at:at] = b"\r\n" if rng.random() < 0.5 else b"\n"
        elif kind == 4:
            data[at:at] = b"A" * rng.choice([100, 4000, 5000, 70000])  # long values and over-long lines
        elif kind == 5:
            del data[at : at + rng.randint(1, 40)]
        elif kind == 6:
            data[at:at] = b"sender=" + bytes(rng.randrange(32, 127) for _ in range(rng.randint(0, 80))) + b"\n"
        elif kind == 7:
            data[at:at] = b"x=y\n" * rng.choice([50, 150])  # attribute count around its bound
        else:
            data[at:at] = b"\x1b[31m%s%n{0}'; DROP TABLE x;--\r\x0b\x7f"
    return bytes(data)


def random_request(rng: random.Random) -> bytes:
    attrs = rcpt(
        sender=rng.choice(["", "a@b.c", "x@" + "y" * rng.randint(1, 300), "@", "a@b@c", "é@ü.de"]),
        recipient=rng.choice(["", "user@example.com", "u+ext@example.com", "root", "a@[192.0.2.1]"]),
        client_address=rng.choice(["192.0.2.1", "::1", "2001:db8::1", "999.1.1.1", "", "x" * 50]),
        reverse_client_name=rng.choice(["", "unknown", "mail.example.net", "[1.2.3.4]", "." * 300]),
        protocol_state=rng.choice(["RCPT", "END-OF-MESSAGE", "DATA", "", "rcpt", "X" * 30]),
        sasl_username=rng.choice(["", "u@example.com", "u", "u@"]),
        size=rng.choice(["0", "-1", "99999999999999999999", "x"]),
        recipient_count=rng.choice(["0", "1", "-5", ""]),
    )
    data = request_bytes(**attrs)
    return mutate(data, rng) if rng.random() < 0.7 else data


class Fuzzer(threading.Thread):
    def __init__(self, proc: ApdProcess, seed: int, until: float):
        super().__init__(daemon=True)
        self.proc, self.rng, self.until = proc, random.Random(seed), until
        self.sent = 0
        self.unexpected: list[str] = []

    def run(self) -> None:
        styles = [self.burst, self.half_then_close, self.reset, self.pipeline, self.no_reading, self.stall]
        weights = [50, 10, 10, 15, 5, 5]
        while time.monotonic() < self.until:
            sock = socket.create_connection((self.proc.host, self.proc.port), timeout=5)
            try:
                self.rng.choices(styles, weights)[0](sock)
            except OSError:
                pass  # apd may close a connection that breaks the protocol: that is its answer
            except Exception as exc:  # a failure of the fuzzer itself must not pass silently
                self.unexpected.append(repr(exc))
            finally:
                sock.close()

    def burst(self, sock: socket.socket) -> None:
        """Random and mutated requests, split at random points, reading whatever comes back."""
        for _ in range(self.rng.randint(1, 20)):
            data = random_request(self.rng) if self.rng.random() < 0.8 else os.urandom(self.rng.randint(1, 3000))
            while data:
                cut = self.rng.randint(1, len(data))
                sock.sendall(data[:cut])
                data = data[cut:]
            self.sent += 1
        sock.settimeout(0.2)
        try:
            while sock.recv(65536):
                pass
        except socket.timeout:
            pass

    def half_then_close(self, sock: socket.socket) -> None:
        data = request_bytes(**rcpt())
        sock.sendall(data[: self.rng.randint(1, len(data) - 1)])
        self.sent += 1

    def reset(self, sock: socket.socket) -> None:
        sock.sendall(random_request(self.rng)[:200])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
        self.sent += 1

    def pipeline(self, sock: socket.socket) -> None:
        """A burst of valid requests in one write: every one is answered, in order."""
        count = self.rng.randint(2, 200)
        sock.sendall(request_bytes(**GOOD[0][0]) * count)
        client = PolicyClient.__new__(PolicyClient)
        client.sock, client.buffer = sock, b""
        for _ in range(count):
            answer = client.read_reply()
            if answer != GOOD[0][1]:
                self.unexpected.append(f"pipelined answer {answer!r}")
        self.sent += count

    def no_reading(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        data = request_bytes(**rcpt(sender="x" * 3000)) * 50
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                sock.send(data)
            except BlockingIOError:
                time.sleep(0.05)
        self.sent += 1

    def stall(self, sock: socket.socket) -> None:
        sock.sendall(b"protocol_state=RCPT\nsender=")
        time.sleep(self.rng.uniform(0.5, 2.0))
        self.sent += 1


def test_fuzzed_clients_never_disturb_a_good_client(apd_factory) -> None:
    proc = apd_factory(workers=2, plugins=PLUGINS, REQUEST_TIMEOUT=3, GREYLISTING_BYPASS_SPF=False)
    workers = set(proc.worker_pids())
    until = time.monotonic() + FUZZ_SECONDS
    fuzzers = [Fuzzer(proc, SEED + i, until) for i in range(FUZZ_THREADS)]
    for fuzzer in fuzzers:
        fuzzer.start()
    good_answers, wrong, latencies = 0, [], []
    with proc.client(timeout=10) as client:
        while time.monotonic() < until:
            request, expected = GOOD[good_answers % len(GOOD)]
            started = time.monotonic()
            answer = client.ask(**request)
            latencies.append(time.monotonic() - started)
            if answer != expected:
                wrong.append((request, answer))
            good_answers += 1
            time.sleep(0.005)
    for fuzzer in fuzzers:
        fuzzer.join(10)
    context = f"(seed {SEED}; APD_FUZZ_SEED={SEED} reproduces)"
    assert wrong == [], context
    assert good_answers > 500, context
    assert max(latencies) < 1.0, f"a good request waited {max(latencies):.2f} s {context}"
    assert [u for f in fuzzers for u in f.unexpected] == [], context
    assert sum(f.sent for f in fuzzers) > 2000, context
    log = proc.log()
    assert "Traceback" not in log, context
    assert "exited" not in log, context  # no worker died
    forged = [line for line in log.split("\n") if line and not LOG_LINE.match(line)]
    assert forged == [], f"client values broke log lines {context}"
    assert set(proc.worker_pids()) == workers, context
    assert proc.proc.poll() is None


@pytest.mark.parametrize("request_text", [b"\x00\n\n", b"=\n\n", b"protocol_state\n\n", b"\xff" * 4097 + b"\n"])
def test_single_hostile_requests_leave_the_connection_or_answer(apd_factory, request_text) -> None:
    proc = apd_factory(workers=1, plugins=PLUGINS)
    with proc.client() as bad:
        bad.send_raw(request_text)
        bad.sock.settimeout(2)
        try:
            received = bad.sock.recv(1000)
        except socket.timeout:
            received = b"(nothing)"
        assert received in (b"", b"action=DUNNO\n\n", b"(nothing)")
    with proc.client() as good:
        assert good.ask(**GOOD[0][0]) == GOOD[0][1]
    assert "Traceback" not in proc.log()
