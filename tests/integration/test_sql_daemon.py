"""A real apd on MariaDB and PostgreSQL: hostile request values reach the database only as
parameters, are stored literally in smtp_sessions, and leave every table in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.policy_client import rcpt
from tests.helpers.rows import wait_for_rows

pytestmark = pytest.mark.servers

CUSTOM_CHECKS = Path(__file__).resolve().parents[1] / "data" / "custom_checks"
HOSTILE = {
    "helo_name": "x'); DROP TABLE greylisting; --",
    "client_name": "a'or'1'='1",
    "reverse_client_name": "x :y",
    "instance": "x\\'; DROP TABLE smtp_sessions; --",
}


@pytest.fixture(params=["mysql", "pgsql"])
def server(request):
    server = request.getfixturevalue("mariadb_server" if request.param == "mysql" else "postgres_server")
    server.truncate("apd")
    return server


def test_hostile_values_are_stored_literally(apd_factory, server):
    apd = apd_factory(
        plugins=["custom_is_local"],
        CUSTOM_CHECKS_DIR=str(CUSTOM_CHECKS),
        workers=1,
        **server.apd_settings("apd"),
    )
    with apd.client() as client:
        assert client.ask(**rcpt(recipient="user@example.com", **HOSTILE)) == "REJECT remote"
        # an injection attempt in an address is refused as an invalid address, before any query
        reply = client.ask(**rcpt(sender="a'or'1'='1@x.org"))
        assert reply.startswith("DUNNO Error: Invalid sender address")
        assert client.ask(**rcpt(recipient="user@example.com")) == "REJECT remote"  # still serving
    iredapd = server.db_name("apd", "iredapd")
    rows = wait_for_rows(
        lambda: server.query(
            "SELECT helo_name, client_name, reverse_client_name, instance FROM smtp_sessions ORDER BY id",
            database=iredapd,
        ),
        2,
    )
    assert rows[0] == tuple(HOSTILE[k] for k in ("helo_name", "client_name", "reverse_client_name", "instance"))
    assert len(rows) == 2
    assert server.query("SELECT COUNT(*) FROM greylisting", database=iredapd) == [(0,)]


def test_one_reused_connection_per_database_per_worker(apd_factory, mariadb_server):
    server = mariadb_server
    server.truncate("apd")
    apd = apd_factory(
        plugins=["custom_is_local"],
        CUSTOM_CHECKS_DIR=str(CUSTOM_CHECKS),
        workers=2,
        LOG_SMTP_SESSIONS=False,
        **server.apd_settings("apd"),
    )

    def vmail_connections() -> set[int]:
        return {r[0] for r in server.query("SELECT id FROM information_schema.processlist WHERE user = 'vmail'")}

    def burst() -> None:
        for _ in range(10):  # new client connections, spread over the workers
            with apd.client() as client:
                for _ in range(3):
                    assert client.ask(**rcpt(recipient="user@example.com")) == "REJECT remote"

    burst()
    first = vmail_connections()
    assert 1 <= len(first) <= 2  # at most one per worker
    burst()
    second = vmail_connections()
    # the same connections, reused across requests (a worker idle in the first burst may open its one now)
    assert first <= second and len(second) <= 2
