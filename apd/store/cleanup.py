"""Expired rows of the iredapd database, removed in small batches (admin-tools.md §0 and §4).

Each batch selects at most ``limit`` ids, then deletes exactly those ids in its own
autocommitted statement, so no lock is held for long and the daemon keeps answering while a
big table is cleaned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from apd.store.base import Database, in_list


@dataclass(frozen=True)
class Expiry:
    """Rows of ``table`` matching ``where`` (constant SQL text, values in ``params``) are expired."""

    table: str
    where: str
    params: tuple[Any, ...]
    id_column: str = "id"


def expiries(now: int, senderscore_days: int, session_days: int) -> list[Expiry]:
    """What cleanup_db removes, in iRedAPD's order. Nothing in amavisd or vmail is touched."""
    return [
        Expiry("throttle_tracking", "init_time + period < %s", (now,)),
        Expiry("greylisting_tracking", "record_expired < %s", (now,)),
        Expiry("senderscore_cache", "time < %s", (now - senderscore_days * 86400,), "client_address"),
        Expiry("smtp_sessions", "time_num < %s", (now - session_days * 86400,)),
    ]


def delete_in_batches(db: Database, expiry: Expiry, limit: int) -> Iterator[int]:
    """Delete the expired rows ``limit`` at a time; yields the running total after each batch.

    The DELETE repeats the condition: a row the daemon renewed between the SELECT and the
    DELETE (a passed greylisting client sending again) is no longer expired and stays.
    """
    if limit < 1:
        raise ValueError("the batch size must be at least 1")
    select = f"SELECT {expiry.id_column} FROM {expiry.table} WHERE {expiry.where} LIMIT {int(limit)}"
    total = 0
    while True:
        ids = [row[0] for row in db.query(select, expiry.params)]
        if not ids:
            return
        deleted = db.execute(
            f"DELETE FROM {expiry.table} WHERE {expiry.id_column} IN ({in_list(ids)}) AND {expiry.where}",
            [*ids, *expiry.params],
        )
        total += max(int(deleted), 0)
        yield total


def count_rows(db: Database, table: str) -> int:
    row = db.query_one(f"SELECT COUNT(*) FROM {table}")
    return int(row[0]) if row else 0
