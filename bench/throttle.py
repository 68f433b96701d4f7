"""Data for the throttle scenarios: the check alone on SQLite and on MariaDB, an END-OF-MESSAGE mix.

Settings rows (kind, account): a global limit for each kind, a max_quota for the example.com
domain (so its users are counted on two rows, in one transaction), personal limits of 100
recipients an hour for u0..u7@example.com (reached during the warm-up: from then on their
messages are refused, which costs a read of the row) and an ``@ip`` inbound limit.

The mix (``MIX``, 64 requests cycled by every connection): a quarter each of authenticated
senders of example.com (u0..u15) and of example.org, external senders to one local recipient
(sender and recipient counted), and external messages to three recipients (Postfix leaves the
recipient empty: only the ``@ip`` inbound row applies); one example.org message is over the
global msg_size. ``statements_per_request`` replays the mix in this process against the same
database and counts what the database runs: SQLite's trace callback, MariaDB's ``Questions``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any, Iterator

GLOBAL = 10**9
ROWS = [
    ("@.", "outbound", 0, 3600, 10 * 1024 * 1024, GLOBAL, -1, 100),
    ("@.", "external", 0, 3600, 10 * 1024 * 1024, GLOBAL, -1, 100),
    ("@.", "inbound", 0, 3600, -1, GLOBAL, -1, -1),
    ("@ip", "inbound", 0, 3600, -1, GLOBAL, -1, -1),
    ("@example.com", "outbound", 60, 86400, -1, -1, 10**12, -1),
] + [(f"u{i}@example.com", "outbound", 100, 3600, -1, 100, -1, -1) for i in range(8)]
INSERT = (
    "INSERT INTO throttle (account, kind, priority, period, msg_size, max_msgs, max_quota, max_rcpts)"
    " VALUES ({0}, {0}, {0}, {0}, {0}, {0}, {0}, {0})"
)


def _request(i: int) -> dict[str, str]:
    base = {
        "protocol_state": "END-OF-MESSAGE",
        "client_address": f"192.0.2.{1 + i}",
        "recipient_count": "1",
        "size": str(2000 + 700 * i),
        "sasl_username": "",
    }
    kind = i % 4
    if kind == 0:
        user = f"u{(i // 4) % 16}@example.com"
        return {**base, "sasl_username": user, "sender": user, "recipient": f"r{i}@remote.test"}
    if kind == 1:
        user = f"v{i}@example.org"
        size = str(20 * 1024 * 1024) if i == 5 else base["size"]
        return {**base, "sasl_username": user, "sender": user, "recipient": "r@remote.test", "size": size}
    if kind == 2:
        return {**base, "sender": f"x{i}@remote.test", "recipient": f"user{i % 8}@example.com"}
    return {**base, "sender": f"x{i}@remote.test", "recipient": "", "recipient_count": "3"}


MIX = tuple(_request(i) for i in range(64))


@contextlib.contextmanager
def sqlite_environment(workdir: Path) -> Iterator[dict[str, Any]]:
    from apd.settings import defaults
    from apd.store import init_db

    path = workdir / "throttle.sqlite3"
    init_db(defaults().replace(backend="sqlite", sqlite_db_path=str(path)))
    with sqlite3.connect(path) as conn:
        conn.executemany(INSERT.format("?"), ROWS)
    yield {"sqlite_db_path": str(path)}


@contextlib.contextmanager
def mariadb_environment(workdir: Path) -> Iterator[dict[str, Any]]:
    """A MariaDB of its own, on iRedAPD's schema when ../shared/iredmail is there."""
    from tests.helpers.mariadb import remove_mariadb, start_mariadb

    server = start_mariadb()
    try:
        schema = "iredmail" if "iredmail" in server.schemas else "apd"
        database = server.db_name(schema, "iredapd")
        conn = server._root(database)
        try:
            with conn.cursor() as cur:
                cur.executemany(INSERT.format("%s"), ROWS)
        finally:
            conn.close()
        yield server.apd_settings(schema)
    finally:
        remove_mariadb(server)


def environment(kind: str) -> Any:
    return sqlite_environment if kind == "sqlite" else mariadb_environment


def statements_per_request(settings: dict[str, Any], rounds: int = 20) -> str:
    """Replay the mix ``rounds`` times through the throttle check in this process and count the
    SQL statements the database runs per request (the counters keep moving, as in the run)."""
    from apd.checks.throttle import Throttle
    from apd.policy import Policy
    from apd.protocol import PolicyRequest
    from apd.settings import defaults
    from apd.store import open_store

    apd_settings = defaults().replace(**settings)
    store = open_store(apd_settings)
    policy = Policy([Throttle(apd_settings, store)], apd_settings, store)
    requests = [PolicyRequest.build(request) for request in MIX]
    total = rounds * len(requests)
    try:
        if apd_settings.backend == "sqlite":
            seen: list[str] = []
            store.iredapd._connection().set_trace_callback(seen.append)
            for _ in range(rounds):
                for request in requests:
                    policy.decide(request)
            return f"{len(seen) / total:.2f} (SQLite trace callback)"
        questions = "SHOW GLOBAL STATUS LIKE 'Questions'"
        before = int(store.iredapd.query_one(questions)[1])
        for _ in range(rounds):
            for request in requests:
                policy.decide(request)
        ran = int(store.iredapd.query_one(questions)[1]) - before - 1  # this SHOW itself
        return f"{ran / total:.2f} (MariaDB Questions)"
    finally:
        store.close()
