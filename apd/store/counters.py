"""Exact counters on the iredapd database when several workers and hosts write at once.

Every read-modify-write a check needs is one atomic statement here, so 4 hosts counting
the same sender still add up exactly (issue 3, point 6):

* ``ThrottleCounters.add``: add recipients and bytes to a throttle_tracking row
  (tid, account), creating the row when missing, restarting an expired window, and
  refusing, in the same statement, an addition that would take ``cur_msgs`` over a limit.
  The common case is one UPDATE; a missing row costs one insert-if-missing more.
* Greylisting triplets are counted by ``GreylistingStore.track`` (one upsert).

iRedAPD's PostgreSQL schema has no unique key on throttle_tracking (tid, account), so an
"insert if missing" cannot rely on ON CONFLICT there: dialects with ``advisory_lock_sql``
(PostgreSQL) serialise the insert of one key with a transaction-scoped advisory lock; the
others (MySQL unique key, SQLite unique key + single writer) insert-or-ignore.
"""

from __future__ import annotations

from dataclasses import dataclass

from apd.store.base import Database

TRACKING_COLUMNS = ("tid", "account", "period", "cur_msgs", "cur_quota", "init_time", "last_time")
# The window of a row has expired: iRedAPD plugins.md throttle step 9.2 (init_time 0 = never).
_EXPIRED = "(init_time > 0 AND %s > init_time + %s)"
# Assignments run left to right on MySQL and later ones see earlier results: init_time,
# which the others read, is assigned last.
ADD_SQL = (
    "UPDATE throttle_tracking SET"
    f" cur_msgs = CASE WHEN {_EXPIRED} THEN %s ELSE cur_msgs + %s END,"
    f" cur_quota = CASE WHEN {_EXPIRED} THEN %s ELSE cur_quota + %s END,"
    " period = %s, last_time = %s,"
    f" init_time = CASE WHEN {_EXPIRED} THEN %s ELSE init_time END"
    " WHERE tid = %s AND account = %s"
    f" AND (%s <= 0 OR cur_msgs + %s <= %s OR ({_EXPIRED} AND %s <= %s))"
)
# PostgreSQL only (SELECT without FROM), under the advisory lock of the key.
INSERT_MISSING_SQL = (
    f"INSERT INTO throttle_tracking ({', '.join(TRACKING_COLUMNS)})"
    " SELECT %s, %s, %s, 0, 0, %s, %s"
    " WHERE NOT EXISTS (SELECT 1 FROM throttle_tracking WHERE tid = %s AND account = %s)"
)


@dataclass(frozen=True)
class TrackingRow:
    id: int
    tid: int
    account: str
    period: int
    cur_msgs: int
    cur_quota: int
    init_time: int
    last_time: int
    last_notify_time: int


TRACKING_FIELDS = tuple(TrackingRow.__dataclass_fields__)


def add_params(tid: int, account: str, period: int, msgs: int, size: int, now: int, max_msgs: int) -> list:
    expired = [now, period]
    return [
        *expired, msgs, msgs,
        *expired, size, size,
        period, now,
        *expired, now,
        tid, account,
        max_msgs, msgs, max_msgs, *expired, msgs, max_msgs,
    ]  # fmt: skip


class ThrottleCounters:
    def __init__(self, db: Database):
        self.db = db

    def add(self, tid: int, account: str, period: int, msgs: int, size: int, now: int, max_msgs: int = -1) -> bool:
        """Count ``msgs`` recipients and ``size`` bytes on (tid, account) for a window of ``period``
        seconds. With ``max_msgs > 0`` the addition is refused (returns False, nothing
        changes) when it would take cur_msgs over ``max_msgs`` in the current window; reaching
        it exactly is allowed. An expired window restarts at ``now`` with just this message."""
        params = add_params(tid, account, period, msgs, size, now, max_msgs)
        # '> 0', not '== 1': iRedAPD on PostgreSQL may have left duplicate (tid, account) rows
        if self.db.execute(ADD_SQL, params) > 0:
            return True
        self.ensure_row(tid, account, period, now)
        return self.db.execute(ADD_SQL, params) > 0

    def ensure_row(self, tid: int, account: str, period: int, now: int) -> None:
        """Create the (tid, account) row with zero counters unless it exists; never a duplicate."""
        lock_sql = getattr(self.db.dialect, "advisory_lock_sql", None)
        if lock_sql:
            with self.db.transaction():
                self.db.execute(lock_sql, (f"throttle_tracking:{tid}:{account}",))
                self.db.execute(INSERT_MISSING_SQL, (tid, account, period, now, now, tid, account))
            return
        insert = self.db.dialect.insert_ignore("throttle_tracking", TRACKING_COLUMNS, ("tid", "account"))
        self.db.execute(insert, (tid, account, period, 0, 0, now, now))

    def rows(self, keys: list[tuple[int, str]]) -> list[TrackingRow]:
        """The tracking rows of the given (tid, account) keys, in id order."""
        if not keys:
            return []
        where = " OR ".join(["(tid = %s AND account = %s)"] * len(keys))
        params = [value for key in keys for value in key]
        rows = self.db.query(
            f"SELECT {', '.join(TRACKING_FIELDS)} FROM throttle_tracking WHERE {where} ORDER BY id", params
        )
        return [
            TrackingRow(int(i), int(t), str(a), int(p), int(m), int(q), int(it), int(lt), int(nt))
            for i, t, a, p, m, q, it, lt, nt in rows
        ]

    def mark_notified(self, tid: int, account: str, now: int) -> int:
        return self.db.execute(
            "UPDATE throttle_tracking SET last_notify_time = %s WHERE tid = %s AND account = %s", (now, tid, account)
        )
