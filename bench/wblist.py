"""Data for the amavisd_wblist scenarios: the same request against 100 and 100,000 list entries
(half of them CIDR networks, IPv4 and IPv6), on SQLite and on MariaDB.

The bench request (bench/measure.py ``payload``: client 192.0.2.10, someone@example.net ->
user@example.com) is decided by list entries found through the radix tree: user@example.com
whitelists 192.0.0.0/16 (answer OK) although the global account blacklists 192.0.2.0/24. The
other entries belong to the global account and 97 other users, so every set has the same
candidate hits and only its size differs.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any, Iterator

Rows = list[tuple[Any, ...]]


def dataset(total: int) -> tuple[Rows, Rows, Rows]:
    """(users, mailaddr, wblist) rows with explicit ids: ``total`` mailaddr + wblist entries."""
    users: Rows = [(1, 0, "@."), (2, 5, "@example.com"), (3, 10, "user@example.com")]
    users += [(4 + i, 10, f"u{i}@example.com") for i in range(97)]
    mailaddr: Rows = [(1, 7, "192.0.0.0/16"), (2, 7, "192.0.2.0/24")]
    wblist: Rows = [(3, 1, "W"), (1, 2, "B")]
    networks = total // 2 - 2
    for i in range(networks):
        if i % 5 == 4:
            email = f"2001:db8:{i // 5:x}::/48"
        else:
            n = i - i // 5
            email = f"{10 + n // 65536}.{(n // 256) % 256}.{n % 256}.0/24"
        mailaddr.append((len(mailaddr) + 1, 7, email))
    for i in range(total - len(mailaddr)):
        email = f"s{i}@d{i % 5000}.example.org" if i % 2 else f"@d{i}.example.org"
        mailaddr.append((len(mailaddr) + 1, 10 if i % 2 else 5, email))
    for row_id, _, _ in mailaddr[2:]:
        rid = 4 + row_id % 97 if row_id % 10 == 0 else 1
        wblist.append((rid, row_id, "B" if row_id % 3 else "W"))
    return users, mailaddr, wblist


@contextlib.contextmanager
def sqlite_lists(total: int, workdir: Path) -> Iterator[dict[str, Any]]:
    from apd.settings import defaults
    from apd.store import init_db

    path = workdir / "wblist.sqlite3"
    init_db(defaults().replace(backend="sqlite", sqlite_db_path=str(path)))
    users, mailaddr, wblist = dataset(total)
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO users (id, priority, policy_id, email) VALUES (?, ?, 0, ?)", users)
        conn.executemany("INSERT INTO mailaddr (id, priority, email) VALUES (?, ?, ?)", mailaddr)
        conn.executemany("INSERT INTO wblist (rid, sid, wb) VALUES (?, ?, ?)", wblist)
        conn.execute("ANALYZE")
    yield {"sqlite_db_path": str(path)}


@contextlib.contextmanager
def mariadb_lists(total: int, workdir: Path) -> Iterator[dict[str, Any]]:
    """A MariaDB of its own (the iRedMail amavisd schema when ../shared/iredmail is there)."""
    from tests.helpers.mariadb import remove_mariadb, start_mariadb

    server = start_mariadb()
    try:
        schema = "iredmail" if "iredmail" in server.schemas else "apd"
        database = server.db_name(schema, "amavisd")
        users, mailaddr, wblist = dataset(total)
        conn = server._root(database)
        try:
            with conn.cursor() as cur:
                encoded = [(i, p, e.encode()) for i, p, e in users]
                cur.executemany("INSERT INTO users (id, priority, policy_id, email) VALUES (%s, %s, 0, %s)", encoded)
                encoded = [(i, p, e.encode()) for i, p, e in mailaddr]
                cur.executemany("INSERT INTO mailaddr (id, priority, email) VALUES (%s, %s, %s)", encoded)
                cur.executemany("INSERT INTO wblist (rid, sid, wb) VALUES (%s, %s, %s)", wblist)
                cur.execute("ANALYZE TABLE users, mailaddr, wblist")
        finally:
            conn.close()
        yield server.apd_settings(schema)
    finally:
        remove_mariadb(server)


def environment(kind: str, total: int) -> Any:
    """The ``Scenario.environment`` factory: workdir -> context manager yielding apd settings."""
    fill = sqlite_lists if kind == "sqlite" else mariadb_lists
    return lambda workdir: fill(total, workdir)
