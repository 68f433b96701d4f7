"""A real apd writes smtp_sessions rows after its replies, batched per worker: within ~100 ms
of the reply, in few INSERTs, the rows a stopping worker holds too, and through a database
outage only the failed batches are lost (one log line) while answers keep coming."""

from __future__ import annotations

import signal
import sqlite3
import time
from typing import Any, Callable

import pytest

from tests.helpers.policy_client import rcpt, request_bytes

pytestmark = pytest.mark.servers

FLUSH_BOUND = 0.1  # LOG_FLUSH_INTERVAL: the longest a row waits after its reply
SLACK = 0.4  # a shared, loaded test machine


def eom(recipient: str) -> dict[str, str]:
    return rcpt(protocol_state="END-OF-MESSAGE", recipient=recipient)  # every END-OF-MESSAGE is logged


def sqlite_count(apd: Any) -> Callable[[], int]:
    def count() -> int:
        with sqlite3.connect(apd.settings["sqlite_db_path"]) as conn:
            return conn.execute("SELECT COUNT(*) FROM smtp_sessions").fetchone()[0]

    return count


def mariadb_count(server: Any) -> Callable[[], int]:
    database = server.db_name("apd", "iredapd")
    return lambda: server.query("SELECT COUNT(*) FROM smtp_sessions", database=database)[0][0]


def wait_for_rows(count: Callable[[], int], wanted: int, timeout: float = 10.0) -> float:
    """Seconds until ``count()`` reaches ``wanted``."""
    started = time.monotonic()
    while (have := count()) < wanted:
        assert time.monotonic() - started < timeout, f"{have} of {wanted} rows"
        time.sleep(0.005)
    return time.monotonic() - started


@pytest.fixture(params=["sqlite", "mysql"])
def apd_and_count(request, apd_factory):
    if request.param == "sqlite":
        apd = apd_factory(plugins=["reject_null_sender"], workers=1)
        return apd, sqlite_count(apd)
    server = request.getfixturevalue("mariadb_server")
    server.truncate("apd")
    return apd_factory(plugins=["reject_null_sender"], workers=1, **server.apd_settings("apd")), mariadb_count(server)


def test_rows_appear_within_the_flush_interval_of_the_reply(apd_and_count):
    apd, count = apd_and_count
    with apd.client() as client:
        for i in range(3):
            assert client.ask(**eom(f"u{i}@example.com")) == "DUNNO"
            assert wait_for_rows(count, i + 1) < FLUSH_BOUND + SLACK


def test_a_burst_is_written_in_few_inserts(apd_factory, mariadb_server):
    mariadb_server.truncate("apd")
    apd = apd_factory(plugins=["reject_null_sender"], workers=1, **mariadb_server.apd_settings("apd"))

    def inserts() -> int:
        return int(mariadb_server.query("SHOW GLOBAL STATUS LIKE 'Com_insert'")[0][1])

    before = inserts()
    with apd.client() as client:
        client.send_raw(b"".join(request_bytes(**eom(f"u{i}@example.com")) for i in range(32)))
        assert [client.read_reply() for _ in range(32)] == ["DUNNO"] * 32
    wait_for_rows(mariadb_count(mariadb_server), 32)
    assert inserts() - before <= 8  # one INSERT per request would be 32


def test_a_stopped_worker_writes_the_rows_it_holds(apd_factory):
    apd = apd_factory(plugins=["reject_null_sender"], workers=1)
    count = sqlite_count(apd)
    with apd.client() as client:
        client.send_raw(b"".join(request_bytes(**eom(f"u{i}@example.com")) for i in range(20)))
        assert [client.read_reply() for _ in range(20)] == ["DUNNO"] * 20
        apd.signal(signal.SIGTERM)  # at once, inside the flush interval
        assert apd.stop() == 0
    assert count() == 20


def test_an_outage_loses_only_its_batches_logs_once_and_answers_keep_coming(apd_factory, mariadb_server):
    server = mariadb_server
    server.truncate("apd")
    apd = apd_factory(plugins=["reject_null_sender"], workers=1, SQL_QUERY_TIMEOUT=1.0, **server.apd_settings("apd"))
    count = mariadb_count(server)

    def ask(recipient: str) -> None:
        started = time.monotonic()
        with apd.client() as client:
            assert client.ask(**eom(recipient)) == "DUNNO"
        assert time.monotonic() - started < 1.5  # the writes never hold an answer

    ask("before@example.com")
    wait_for_rows(count, 1)
    server.stop()
    try:
        for i in range(4):
            ask(f"lost{i}@example.com")
            time.sleep(FLUSH_BOUND * 2)  # one failed batch each
    finally:
        server.start()
    deadline = time.monotonic() + 30
    while "written again" not in apd.log():  # the back-off ends; the next batch goes in
        assert time.monotonic() < deadline, apd.log()[-3000:]
        ask("after@example.com")
        time.sleep(0.3)
    rows = server.query("SELECT DISTINCT recipient FROM smtp_sessions", database=server.db_name("apd", "iredapd"))
    assert sorted(r[0] for r in rows) == ["after@example.com", "before@example.com"]
    log = apd.log()
    assert log.count("<!> Error while logging smtp action: ") == 1
    assert "Traceback" not in log
