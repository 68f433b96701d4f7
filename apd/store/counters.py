"""Exact throttle counters on the iredapd database when several workers and hosts write at once.

iRedAPD reads a counter, decides, then writes: N workers or hosts at the limit all let their
message through (DIFFERENCES.md 12). Here the test and the increment are one statement,
``ADD_SQL``: an UPDATE of the tracking row ``(tid, key)`` whose WHERE clause is the limit test,
the window restart folded into its SET. Zero rows matched means the row refused the message, or
that it does not exist yet; a read of the rows tells which (and gives a quota notice its data).

``ThrottleCounters.count`` (one message, the counters of one ``apply()`` call, see
apd/throttle/rules.py ``counters``), in round trips:

* one counter (the usual case: max_msgs and max_quota claimed by one setting row): the UPDATE
  alone when the row takes the message; UPDATE + SELECT when it refuses; UPDATE + SELECT +
  INSERT when the row is new;
* two counters (max_msgs and max_quota claimed by different rows): both UPDATEs in one
  transaction (BEGIN ... COMMIT), rolled back when either refuses, so a refused message moves
  none of them. Every writer takes the rows in (tid, key) order: no deadlock between messages.

The statements implement ``rules.refuses`` / ``rules.after`` exactly (tests hold the two together).

iRedAPD's PostgreSQL schema has no unique key on throttle_tracking (tid, account), so creating a
row cannot rely on ON CONFLICT there: dialects with ``advisory_lock_sql`` (PostgreSQL, whatever
its schema) serialise the insert of one key with a transaction-scoped advisory lock and insert
only where no row exists; the others (MySQL, SQLite: unique key) insert and take a duplicate
key as "someone else created it".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from apd.errors import Conflict, DuplicateKey, StoreError
from apd.store.base import Database
from apd.throttle.rules import ACCEPTED, Counted, Counter, Tracked, first_refusal

TRACKING_COLUMNS = ("tid", "account", "period", "cur_msgs", "cur_quota", "init_time", "last_time")
# The window of a row has expired (rules.expired): params now, period. init_time 0 = never.
_EXPIRED = "(init_time > 0 AND %s > init_time + %s)"
# SET: MySQL runs assignments left to right and later ones see earlier results, so init_time,
# which the others read, is assigned last. WHERE: rules.refuses, negated, for both rules.
ADD_SQL = (
    "UPDATE throttle_tracking SET"
    f" cur_msgs = CASE WHEN {_EXPIRED} THEN %s ELSE cur_msgs + %s END,"
    f" cur_quota = CASE WHEN {_EXPIRED} THEN %s ELSE cur_quota + %s END,"
    " period = %s, last_time = %s,"
    f" init_time = CASE WHEN {_EXPIRED} OR init_time = 0 THEN %s ELSE init_time END"
    " WHERE tid = %s AND account = %s"
    f" AND (%s <= 0 OR CASE WHEN {_EXPIRED} THEN %s ELSE cur_msgs + %s END <= %s)"
    f" AND (%s <= 0 OR {_EXPIRED} OR cur_quota <= %s)"
)
INSERT_SQL = f"INSERT INTO throttle_tracking ({', '.join(TRACKING_COLUMNS)}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
# PostgreSQL, under the advisory lock of the key: insert unless a row exists.
INSERT_MISSING_SQL = (
    f"INSERT INTO throttle_tracking ({', '.join(TRACKING_COLUMNS)})"
    " SELECT %s, %s, %s, %s, %s, %s, %s"
    " WHERE NOT EXISTS (SELECT 1 FROM throttle_tracking WHERE tid = %s AND account = %s)"
)
# Rounds of "update, read" before giving up on rows that keep changing between the two.
ATTEMPTS = 4


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

    def counters(self) -> Tracked:
        return Tracked(self.cur_msgs, self.cur_quota, self.init_time, self.last_time, self.last_notify_time)


TRACKING_FIELDS = tuple(TrackingRow.__dataclass_fields__)


def add_params(
    tid: int, account: str, period: int, msgs: int, size: int, now: int, max_msgs: int, max_quota: int = 0
) -> list:
    expired = [now, period]
    return [
        *expired, msgs, msgs,
        *expired, size, size,
        period, now,
        *expired, now,
        tid, account,
        max_msgs, *expired, msgs, msgs, max_msgs,
        max_quota, *expired, max_quota,
    ]  # fmt: skip


def counter_params(counter: Counter, rc: int, size: int, now: int) -> list:
    return add_params(counter.tid, counter.key, counter.period, rc, size, now, counter.max_msgs, counter.max_quota)


class _Refused(Exception):
    """An UPDATE of a transaction matched no row: roll the others back."""


class ThrottleCounters:
    def __init__(self, db: Database):
        self.db = db
        # MySQL's collation matches 'User@x' for 'user@x': key rows read back the same way
        self._fold = str.lower if db.dialect.case_insensitive_text else str

    def count(self, counters: Sequence[Counter], rc: int, size: int, now: int) -> Counted:
        """Count ``rc`` recipients and ``size`` bytes on every counter, or on none when one
        refuses (``Counted.refused``). Implements ``rules.Counting``."""
        for _ in range(ATTEMPTS):
            try:
                if self._update(counters, rc, size, now):
                    return ACCEPTED
            except Conflict:
                continue  # a deadlock victim (e.g. against a cleanup batch): its updates are undone
            rows = self.tracked(counters)
            refusal = first_refusal(counters, rows, rc, size, now)
            if refusal:
                counter, rule = refusal
                return Counted(counter, rule, rows.get((counter.tid, counter.key)))
            missing = [c for c in counters if (c.tid, c.key) not in rows]
            if len(counters) == 1 and missing:
                if self.create(counters[0], rc, size, now):
                    return ACCEPTED
                continue  # another message created it meanwhile: again
            for counter in missing:  # zero rows, then the transaction again
                self.create(counter, 0, 0, now)
            # nothing missing and nothing refuses now: the rows changed since the UPDATE
            # (a window restarted): again
        raise StoreError(f"throttle counters of setting id {counters[0].tid} kept changing or deadlocking")

    def _update(self, counters: Sequence[Counter], rc: int, size: int, now: int) -> bool:
        if len(counters) == 1:
            return self.db.execute(ADD_SQL, counter_params(counters[0], rc, size, now)) > 0
        try:
            with self.db.transaction():
                for counter in counters:
                    # '== 0', not '!= 1': iRedAPD on PostgreSQL may have left duplicate rows
                    if self.db.execute(ADD_SQL, counter_params(counter, rc, size, now)) == 0:
                        raise _Refused
        except _Refused:
            return False
        return True

    def create(self, counter: Counter, msgs: int, size: int, now: int) -> bool:
        """Insert the counter's row holding ``msgs`` and ``size`` unless it exists (never a
        duplicate); True when this call created it."""
        values = (counter.tid, counter.key, counter.period, msgs, size, now, now)
        lock_sql = getattr(self.db.dialect, "advisory_lock_sql", None)
        try:
            if lock_sql:
                with self.db.transaction():
                    self.db.execute(lock_sql, (f"throttle_tracking:{counter.tid}:{counter.key}",))
                    return self.db.execute(INSERT_MISSING_SQL, (*values, counter.tid, counter.key)) > 0
            self.db.execute(INSERT_SQL, values)
        except DuplicateKey:  # also on PostgreSQL with a unique key, when a writer without the lock won
            return False
        return True

    def tracked(self, counters: Sequence[Counter]) -> dict[tuple[int, str], Tracked]:
        """The counters' rows, keyed by (tid, key) as the counters spell them. Of duplicate rows
        (iRedAPD on PostgreSQL) the last one read wins, as in iRedAPD."""
        wanted = {(c.tid, self._fold(c.key)): (c.tid, c.key) for c in counters}
        found = {}
        for row in self.rows(list(dict.fromkeys((c.tid, c.key) for c in counters))):
            key = wanted.get((row.tid, self._fold(row.account)))
            if key:
                found[key] = row.counters()
        return found

    def rows(self, keys: Sequence[tuple[int, str]]) -> list[TrackingRow]:
        """The tracking rows of the given (tid, account) keys, in id order."""
        if not keys:
            return []
        where = " OR ".join(["(tid = %s AND account = %s)"] * len(keys))
        params = [value for key in keys for value in key]
        rows = self.db.query(
            f"SELECT {', '.join(TRACKING_FIELDS)} FROM throttle_tracking WHERE {where} ORDER BY id", params
        )
        return [TrackingRow(int(i), int(t), str(a), *(int(v or 0) for v in values)) for i, t, a, *values in rows]

    def add(self, tid: int, account: str, period: int, msgs: int, size: int, now: int, max_msgs: int = 0) -> bool:
        """``count`` on one counter with a max_msgs limit only (tests and tools)."""
        return self.count([Counter(tid, account, period, max_msgs)], msgs, size, now).refused is None

    def mark_notified(self, tid: int, account: str, now: int) -> int:
        return self.db.execute(
            "UPDATE throttle_tracking SET last_notify_time = %s WHERE tid = %s AND account = %s", (now, tid, account)
        )
