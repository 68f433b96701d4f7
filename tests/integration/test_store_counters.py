"""Exact counters under concurrency (issue 3, point 6) on SQLite, MariaDB and PostgreSQL,
in apd's own schema and in iRedAPD's (whose PostgreSQL throttle_tracking has no unique key).

4 processes x 250 concurrent increments on one key must end at exactly 1,000.
"""

from __future__ import annotations

import multiprocessing

import pytest

from apd.store import open_store
from apd.store.greylisting import Times
from tests.helpers.backends import open_fresh_store

pytestmark = pytest.mark.servers

PROCESSES, PER_PROCESS = 4, 250


@pytest.fixture
def store(schema_store):
    return schema_store


def throttle_id(store, account: str = "user@example.com") -> int:
    store.iredapd.execute(
        "INSERT INTO throttle (account, kind, priority, period, max_msgs) VALUES (%s, %s, %s, %s, %s)",
        (account, "outbound", 100, 3600, 100),
    )
    return int(store.iredapd.query_one("SELECT id FROM throttle WHERE account = %s", (account,))[0])


def test_add_creates_counts_and_limits(store):
    counters = store.throttle_counters
    tid = throttle_id(store)
    assert counters.add(tid, "user@example.com", 3600, 3, 100, now=1000, max_msgs=5)
    assert counters.add(tid, "user@example.com", 3600, 2, 50, now=1010, max_msgs=5)  # exactly 5: allowed
    assert not counters.add(tid, "user@example.com", 3600, 1, 10, now=1020, max_msgs=5)
    (row,) = counters.rows([(tid, "user@example.com")])
    assert (row.cur_msgs, row.cur_quota, row.init_time, row.last_time) == (5, 150, 1000, 1010)
    # unlimited (max 0 or -1) always counts
    assert counters.add(tid, "user@example.com", 3600, 7, 1, now=1030, max_msgs=0)
    # the window expired: restart with just this message, even over the old count ...
    assert not counters.add(tid, "user@example.com", 3600, 6, 60, now=1000 + 3601, max_msgs=5)  # ... within the limit
    assert counters.add(tid, "user@example.com", 3600, 4, 40, now=1000 + 3601, max_msgs=5)
    (row,) = counters.rows([(tid, "user@example.com")])
    assert (row.cur_msgs, row.cur_quota, row.init_time) == (4, 40, 4601)
    counters.mark_notified(tid, "user@example.com", 4700)
    assert counters.rows([(tid, "user@example.com")])[0].last_notify_time == 4700


def test_add_refuses_a_single_message_over_the_limit(store):
    counters = store.throttle_counters
    tid = throttle_id(store)
    assert not counters.add(tid, "1.2.3.4", 60, 13, 0, now=1000, max_msgs=12)
    assert counters.rows([(tid, "1.2.3.4")])[0].cur_msgs == 0
    assert counters.rows([(tid, "other")]) == []


def _throttle_worker(settings, tid: int, max_msgs: int, barrier, results) -> None:
    store = open_store(settings)
    barrier.wait()
    accepted = 0
    for i in range(PER_PROCESS):
        if store.throttle_counters.add(tid, "user@example.com", 3600, 1, 10, now=1000 + i, max_msgs=max_msgs):
            accepted += 1
    store.close()
    results.put(accepted)


def _greylist_worker(settings, barrier, results) -> None:
    store = open_store(settings)
    barrier.wait()
    for _ in range(PER_PROCESS):
        store.greylisting.track(
            "s@x.org", "r@example.com", "192.0.2.9", "x.org", "example.com", Times(1000, 2000, 9000, 99000)
        )
    store.close()
    results.put(PER_PROCESS)


def run_processes(target, *args) -> list[int]:
    """Start PROCESSES children of ``target(*args, barrier, results)`` released together; their results."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, results)) for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    counts = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    return counts


def test_concurrent_throttle_increments_are_exact(store):
    tid = throttle_id(store)
    store.close()  # the children open their own connections
    accepted = run_processes(_throttle_worker, store.settings, tid, -1)
    assert accepted == [PER_PROCESS] * PROCESSES
    (row,) = store.throttle_counters.rows([(tid, "user@example.com")])
    assert (row.cur_msgs, row.cur_quota) == (PROCESSES * PER_PROCESS, PROCESSES * PER_PROCESS * 10)


def test_concurrent_throttle_limit_is_exact(store):
    """With a limit of 700, exactly 700 of the 1,000 concurrent additions are accepted."""
    tid = throttle_id(store)
    store.close()
    accepted = run_processes(_throttle_worker, store.settings, tid, 700)
    assert sum(accepted) == 700
    (row,) = store.throttle_counters.rows([(tid, "user@example.com")])
    assert row.cur_msgs == 700


def test_concurrent_greylisting_tracking_is_exact(store):
    """1,000 concurrent too-early retries of one new triplet: one row, blocked_count 1,000."""
    store.close()
    run_processes(_greylist_worker, store.settings)
    row = store.greylisting.tracking_row("s@x.org", "r@example.com", "192.0.2.9")
    assert row["blocked_count"] == PROCESSES * PER_PROCESS
    count = store.iredapd.query_one("SELECT COUNT(*) FROM greylisting_tracking")
    assert count == (1,)


def test_duplicate_rows_left_by_iredapd_on_postgresql_still_count(postgres_server):
    """iRedAPD's PostgreSQL schema lets duplicate (tid, account) rows exist; apd keeps counting."""
    postgres_server.require_schema("iredmail")
    store = open_fresh_store("pgsql", postgres_server.settings("iredmail"), postgres_server, "iredmail")
    tid = throttle_id(store)
    for _ in range(2):
        store.iredapd.execute(
            "INSERT INTO throttle_tracking (tid, account, period, cur_msgs, init_time) VALUES (%s, %s, 3600, 1, 1000)",
            (tid, "dup@example.com"),
        )
    assert store.throttle_counters.add(tid, "dup@example.com", 3600, 2, 0, now=1100, max_msgs=10)
    assert [r.cur_msgs for r in store.throttle_counters.rows([(tid, "dup@example.com")])] == [3, 3]
    store.close()
