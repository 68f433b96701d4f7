"""A real apd on MariaDB / PostgreSQL while the database goes away and comes back.

The request must get the fail-safe answer (STORE_FAILURE_ACTION: DUNNO by default, or a
4xx) within SQL_QUERY_TIMEOUT + 1 s, one log line must name the database and the reason,
the same worker keeps serving, and correct answers return without restarting apd. apd
must also start and serve while the database is down.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.helpers.policy_client import rcpt

pytestmark = pytest.mark.servers

CUSTOM_CHECKS = Path(__file__).resolve().parents[1] / "data" / "custom_checks"
TIMEOUT = 1.0
DEFER = "451 4.3.0 Temporary failure of the account database"
LOCAL = "REJECT local"


@pytest.fixture(params=["mysql", "pgsql"])
def server(request):
    server = request.getfixturevalue("mariadb_server" if request.param == "mysql" else "postgres_server")
    server.truncate("apd")
    server.execute("INSERT INTO domain (domain) VALUES ('example.com')", database=server.db_name("apd", "vmail"))
    yield server
    if not server.running():
        server.start()


def start_apd(apd_factory, server, **settings):
    return apd_factory(
        plugins=["custom_is_local"],
        CUSTOM_CHECKS_DIR=str(CUSTOM_CHECKS),
        SQL_QUERY_TIMEOUT=TIMEOUT,
        workers=1,  # one worker: the same process must survive the outage and recover
        **server.apd_settings("apd", **settings),
    )


def ask(apd) -> tuple[str, float]:
    started = time.monotonic()
    with apd.client(timeout=30) as client:
        reply = client.ask(**rcpt(recipient="user@example.com"))
    return reply, time.monotonic() - started


def wait_for_answer(apd, expected: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        reply, _ = ask(apd)
        if reply == expected:
            return
        assert time.monotonic() < deadline, f"still {reply!r}, not {expected!r}; log:\n{apd.log()[-3000:]}"
        time.sleep(0.3)


def test_outage_gives_the_fail_safe_answer_and_recovers(apd_factory, server):
    server.stop()  # apd starts while its database is down
    apd = start_apd(apd_factory, server)
    workers = apd.worker_pids()
    reply, elapsed = ask(apd)
    assert reply == "DUNNO"
    assert elapsed < TIMEOUT + 1
    apd.wait_for_log("database vmail (")
    line = next(x for x in apd.log().splitlines() if "database vmail (" in x and "unavailable" in x)
    assert server.db_name("apd", "vmail") in line  # which database ...
    assert "refused" in line.lower() or "connect" in line.lower()  # ... and why
    reply, elapsed = ask(apd)  # the worker keeps serving, fast while backing off
    assert (reply, elapsed < TIMEOUT + 1) == ("DUNNO", True)

    server.start()
    wait_for_answer(apd, LOCAL)  # no restart of apd needed
    server.stop()  # a second outage, now with an open connection that breaks
    reply, elapsed = ask(apd)
    assert reply == "DUNNO" and elapsed < TIMEOUT + 1, (reply, elapsed)
    server.start()
    wait_for_answer(apd, LOCAL)
    assert apd.worker_pids() == workers  # the same worker served throughout
    assert "reachable again" in apd.log()


def test_blackholed_database_gives_the_defer_answer_in_time(apd_factory, server):
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)  # accepts connections, never answers
        apd = start_apd(apd_factory, server, vmail_db_port=hole.getsockname()[1], STORE_FAILURE_ACTION=DEFER)
        for _ in range(2):
            reply, elapsed = ask(apd)
            assert reply == DEFER
            assert elapsed < TIMEOUT + 1, elapsed
            time.sleep(0.6)  # past the first back-off: the second request waits on the server again
        assert "no answer" in apd.log() or "timed out" in apd.log()
        ask(apd)  # pays one timeout; then the back-off answers at once, without waiting on the server
        started = time.monotonic()
        with apd.client(timeout=30) as client:
            replies = {client.ask(**rcpt(recipient="user@example.com")) for _ in range(50)}
        assert replies == {DEFER}
        assert time.monotonic() - started < 0.4
        # the store logs the state change once, not once per request
        errors = [x for x in apd.log().splitlines() if " ERROR " in x and "database vmail (" in x]
        assert len(errors) == 1, errors
