"""Claiming the quota notice of a throttle counting window (plugins.md §throttle "Notification mail").

iRedAPD reads ``last_notify_time``, sends, then writes it: workers and hosts that reject at the
same moment each send a notice. Here the test and the write are one UPDATE, so of any number of
simultaneous claims on one throttle_tracking row exactly one matches (rowcount > 0) and sends.

The window is the row's own ``(init_time, init_time + period]`` as stored at that moment (not
what the caller read earlier), so a claim racing with a window reset by another host cannot
send a second notice for the new window. A row whose window has expired but was not restarted
(every message since was rejected) counts as one new window: one notice, then at most one per
``period``. A message rejected before its counter has a row (``max_msgs = 0``, or a first message
over ``max_quota``) creates the row with nothing counted, so its notice is claimed the same way
(iRedAPD, with no row to mark, sent a notice for every such rejection).
"""

from __future__ import annotations

from apd.store.base import Database
from apd.store.counters import ThrottleCounters
from apd.throttle.rules import Counter

# iRedAPD's condition: never notified, or the last notice lies outside the current window. The
# window is taken as [init_time, init_time + period], closed on the left unlike iRedAPD's: a
# notice sent in the second its window began would otherwise not count, and the next rejection
# of that window would send a second one.
# Additions only: the MySQL columns are UNSIGNED and "now - period" could go negative there.
_EXPIRED = "(init_time > 0 AND %s > init_time + period)"
CLAIM_SQL = (
    "UPDATE throttle_tracking SET last_notify_time = %s"
    " WHERE tid = %s AND account = %s AND ("
    " last_notify_time = 0"
    f" OR (NOT {_EXPIRED}"
    "  AND NOT (last_notify_time >= init_time AND last_notify_time <= init_time + period))"
    f" OR ({_EXPIRED}"
    "  AND (last_notify_time <= init_time + period OR last_notify_time + period <= %s)))"
)


def claim_notice(db: Database, tid: int, account: str, now: int, period: int = 0) -> bool:
    """True when this call won the notice of the (tid, account) row's current window (and set
    its last_notify_time to ``now``); False when another claim got it first. A missing row is
    created first when the counter's ``period`` is given (without it, a missing row loses).
    '> 0', not '== 1': iRedAPD on PostgreSQL may have left duplicate (tid, account) rows."""
    params = (now, tid, account, now, now, now)
    if db.execute(CLAIM_SQL, params) > 0:
        return True
    if period <= 0:
        return False
    # Whoever creates the row, the claim after it is the same atomic UPDATE: one winner.
    ThrottleCounters(db).create(Counter(tid, account, period), 0, 0, now)
    return db.execute(CLAIM_SQL, params) > 0
