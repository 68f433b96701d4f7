"""Exact throttle counters under a real race (issue 10, DIFFERENCES.md 12).

A sender may send 500 recipients an hour. 2,000 single-recipient END-OF-MESSAGE requests from
200 connections released at once reach 4 apd instances (4 MX hosts, 2 workers each) sharing one
MariaDB, or one PostgreSQL (apd's DDL, and iRedAPD's schema without the unique key on
throttle_tracking), or 4 workers of one apd on SQLite. Exactly 500 get DUNNO, 1,500
``REJECT Throttling quota exceeded``, and the counter ends at 500 (iRedAPD lets 500-504 through).
Three rounds each, each on a fresh counter: a race is not lost every time.
"""

from __future__ import annotations

import sqlite3

import pytest

from tests.helpers.policy_client import request_bytes
from tests.helpers.throttle_race import race

pytestmark = pytest.mark.servers

LIMIT, CONNECTIONS, PER_CONNECTION, ROUNDS = 500, 200, 10, 3
SENDER, SIZE = "sender@example.net", 1000
QUOTA = "REJECT Throttling quota exceeded"
CASES = [("mysql", "apd"), ("pgsql", "apd"), ("pgsql", "iredmail"), ("sqlite", "apd")]
REQUEST = request_bytes(
    protocol_state="END-OF-MESSAGE",
    client_address="192.0.2.10",
    sender=SENDER,
    recipient="user@example.com",
    recipient_count="1",
    size=str(SIZE),
    sasl_username="",
)
COMMON = {"plugins": ["throttle"], "LOG_SMTP_SESSIONS": False, "NOTIFICATION_RECIPIENTS": []}
SETTING = (
    "INSERT INTO throttle (account, kind, priority, period, msg_size, max_msgs, max_quota, max_rcpts)"
    " VALUES ('sender@example.net', 'external', 100, 3600, -1, 500, -1, -1)"
)


class SqlServerDb:
    def __init__(self, server, schema: str):
        self.server, self.name = server, server.db_name(schema, "iredapd")

    def execute(self, sql: str) -> None:
        self.server.execute(sql, database=self.name)

    def query(self, sql: str) -> list[tuple]:
        return self.server.query(sql, database=self.name)


class SqliteDb:
    def __init__(self, path: str):
        self.path = path

    def execute(self, sql: str) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.execute(sql)

    def query(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.path) as conn:
            return list(conn.execute(sql))


@pytest.fixture(params=CASES, ids=[f"{kind}-{schema}" for kind, schema in CASES])
def instances(request, apd_factory, tmp_path):
    """(db, started apd instances) with the 500-recipient setting in place."""
    kind, schema = request.param
    if kind == "sqlite":
        from apd.settings import defaults
        from apd.store import init_db

        path = str(tmp_path / "race.sqlite3")
        init_db(defaults().replace(backend="sqlite", sqlite_db_path=path))
        db = SqliteDb(path)
        db.execute(SETTING)
        return db, [apd_factory(workers=4, sqlite_db_path=path, **COMMON)]
    server = request.getfixturevalue("mariadb_server" if kind == "mysql" else "postgres_server")
    server.require_schema(schema)
    server.truncate(schema)
    db = SqlServerDb(server, schema)
    db.execute(SETTING)
    return db, [apd_factory(workers=2, **COMMON, **server.apd_settings(schema)) for _ in range(4)]


def test_exactly_the_limit_passes(instances):
    db, apds = instances
    addresses = [(apd.host, apd.port) for apd in apds]
    for round_ in range(ROUNDS):
        db.execute("DELETE FROM throttle_tracking")  # a fresh window each round
        replies = race(addresses, REQUEST, CONNECTIONS, PER_CONNECTION)
        assert dict(replies) == {"DUNNO": LIMIT, QUOTA: CONNECTIONS * PER_CONNECTION - LIMIT}, round_
        rows = db.query("SELECT account, cur_msgs, cur_quota FROM throttle_tracking")
        assert rows == [(SENDER, LIMIT, LIMIT * SIZE)], round_  # one row, never a duplicate
