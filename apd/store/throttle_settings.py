"""The ``throttle`` settings table as apd-throttle-admin edits it (schemas.md §1.1).

The check reads these rows through apd/store/throttle.py and counts on throttle_tracking
(apd/store/counters.py); this module lists, adds or changes, and deletes settings.

Accounts are compared lowercased: the tool stores them so, but a row typed by hand
(``User@Example.com``) is still found, as the check finds it. iRedAPD's PostgreSQL schema has
no unique key on (account, kind): a dialect with ``advisory_lock_sql`` serialises two tools
saving the same setting at once, so neither adds a second row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from apd.errors import DuplicateKey
from apd.store.base import Database, in_list
from apd.store.throttle import SETTING_COLUMNS
from apd.throttle.rules import Setting

LIMITS = ("msg_size", "max_rcpts", "max_msgs", "max_quota")
VALUE_COLUMNS = ("period", *LIMITS)  # what --add may set; the SQL names come from here only
_MATCH = "LOWER(account) = %s AND LOWER(kind) = %s"


@dataclass(frozen=True)
class Saved:
    created: bool  # a new row, or a changed one
    setting: Setting


def _setting(row: Sequence) -> Setting:
    i, account, kind, priority, period, *limits = row
    return Setting(
        int(i), str(account), str(kind), *(None if v is None else int(v) for v in (priority, period, *limits))
    )


class ThrottleSettings:
    def __init__(self, db: Database):
        self.db = db

    def select(self, account: str | None = None, kind: str | None = None) -> list[Setting]:
        """Rows of one account and/or kind (all when None), by kind, then as the check ranks them."""
        where, params = [], []
        if account is not None:
            where.append("LOWER(account) = %s")
            params.append(account.lower())
        if kind is not None:
            where.append("LOWER(kind) = %s")
            params.append(kind.lower())
        sql = f"SELECT {SETTING_COLUMNS} FROM throttle"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_setting(r) for r in self.db.query(sql + " ORDER BY kind, priority DESC, account, id", params)]

    def get(self, account: str, kind: str) -> list[Setting]:
        """The rows of (account, kind): one, none, or several where iRedAPD's PostgreSQL schema let them in."""
        rows = self.db.query(f"SELECT {SETTING_COLUMNS} FROM throttle WHERE {_MATCH} ORDER BY id", (account, kind))
        return [_setting(r) for r in rows]

    def save(self, account: str, kind: str, priority: int, values: Mapping[str, int]) -> Saved:
        """Set ``values`` (period and limits) on the (account, kind) row, creating it when missing
        with -1 for the limits not given; the caller makes sure a new row gets a period."""
        unknown = set(values) - set(VALUE_COLUMNS)
        if unknown:
            raise ValueError(f"not a throttle value: {', '.join(sorted(unknown))}")
        try:
            return self._save(account, kind, priority, values)
        except DuplicateKey:  # another tool created the row between our UPDATE and INSERT
            return self._save(account, kind, priority, values)

    def _save(self, account: str, kind: str, priority: int, values: Mapping[str, int]) -> Saved:
        columns = [c for c in VALUE_COLUMNS if c in values]
        with self.db.transaction():
            self._lock(account, kind)
            assignments = ", ".join(["priority = %s", *(f"{c} = %s" for c in columns)])
            changed = self.db.execute(
                f"UPDATE throttle SET {assignments} WHERE {_MATCH}",
                [priority, *(values[c] for c in columns), account, kind],
            )
            if not changed:
                row = {"period": 0, **{limit: -1 for limit in LIMITS}, **values}
                self.db.execute(
                    f"INSERT INTO throttle (account, kind, priority, {', '.join(VALUE_COLUMNS)})"
                    f" VALUES ({', '.join(['%s'] * (3 + len(VALUE_COLUMNS)))})",
                    [account, kind, priority, *(row[c] for c in VALUE_COLUMNS)],
                )
            saved = self.get(account, kind)
        return Saved(not changed, saved[0])

    def delete(self, account: str, kind: str) -> tuple[list[Setting], int]:
        """Delete the (account, kind) setting and its counters (throttle_tracking refers to it);
        the rows deleted and how many counters went with them."""
        with self.db.transaction():
            rows = self.get(account, kind)
            if not rows:
                return [], 0
            ids = [row.id for row in rows]
            counters = self.db.execute(f"DELETE FROM throttle_tracking WHERE tid IN ({in_list(ids)})", ids)
            self.db.execute(f"DELETE FROM throttle WHERE id IN ({in_list(ids)})", ids)
        return rows, counters

    def _lock(self, account: str, kind: str) -> None:
        lock_sql = getattr(self.db.dialect, "advisory_lock_sql", None)
        if lock_sql:
            self.db.execute(lock_sql, (f"throttle:{kind}:{account}",))
