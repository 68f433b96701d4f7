"""Exact counters under concurrency (issue 3, point 6) on SQLite, MariaDB and PostgreSQL,
in apd's own schema and in iRedAPD's (whose PostgreSQL throttle_tracking has no unique key).

4 processes x 250 concurrent increments on one key must end at exactly 1,000.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import replace

import pytest

from apd.store import open_store
from apd.store.greylisting import Times
from apd.throttle.rules import Counter, MemoryCounting, Tracked
from tests.helpers.backends import open_fresh_store
from tests.helpers.mysql_drivers import case_id, driver_schema_cases, driver_store

pytestmark = pytest.mark.servers

PROCESSES, PER_PROCESS = 4, 250


@pytest.fixture(params=driver_schema_cases(), ids=case_id)
def store(request, tmp_path, monkeypatch):
    """``schema_store``, with MariaDB on each driver (mysqlclient, PyMySQL)."""
    yield from driver_store(request, tmp_path, monkeypatch)


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
    assert counters.rows([(tid, "1.2.3.4")]) == []  # a refused message leaves no trace


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


# --- the counting statements against the pure model (apd/throttle/rules.py)

T0 = 1_700_000_000
# (stored row or None, counter limits (max_msgs, max_quota), rc, size): one case per tracking key
MODEL_CASES = [
    (None, (10, 0), 3, 300),  # a new row
    (None, (10, 0), 11, 1),  # too many recipients even for an empty row: no row is created
    (Tracked(7, 0, T0 - 10), (10, 0), 3, 1),  # reaching max_msgs exactly
    (Tracked(7, 0, T0 - 10), (10, 0), 4, 1),  # one over it
    (Tracked(10, 0, T0 - 61), (10, 0), 10, 5),  # an expired window restarts with this message
    (Tracked(10, 0, T0 - 61), (10, 0), 11, 5),  # ... but not over the limit
    (Tracked(0, 100, T0 - 10), (0, 100), 1, 10**6),  # max_quota is tested before adding
    (Tracked(0, 101, T0 - 10), (0, 100), 1, 1),  # and refuses once over
    (Tracked(3, 101, T0 - 10), (5, 100), 1, 1),  # both rules: max_quota refuses
    (Tracked(5, 0, 0, 0, 7), (0, 0), 2, 20),  # init_time 0 is written as now; notify time kept
    (Tracked(10**6, 10**8, T0 - 10), (0, 0), 5, 50),  # 0: unlimited, still counted
]


def stored(store, tid: int, key: str, tracked: Tracked) -> None:
    store.iredapd.execute(
        "INSERT INTO throttle_tracking (tid, account, period, cur_msgs, cur_quota, init_time, last_time,"
        " last_notify_time) VALUES (%s, %s, 60, %s, %s, %s, %s, %s)",
        (tid, key, tracked.cur_msgs, tracked.cur_quota, tracked.init_time, tracked.last_time, tracked.last_notify_time),
    )


def test_counting_statements_implement_the_model(store):
    """Every case on its own tracking key: the SQL leaves what rules.after / rules.refuses say."""
    tid = throttle_id(store)
    model = MemoryCounting()
    for n, (row, (max_msgs, max_quota), rc, size) in enumerate(MODEL_CASES):
        counter = Counter(tid, f"case{n}@example.com", 60, max_msgs, max_quota)
        if row is not None:
            stored(store, tid, counter.key, row)
            model.rows[(tid, counter.key)] = row
        expected = model.count([counter], rc, size, T0)
        got = store.throttle_counters.count([counter], rc, size, T0)
        assert got == expected, (n, got, expected)
        assert store.throttle_counters.tracked([counter]) == {
            k: v for k, v in model.rows.items() if k == (tid, counter.key)
        }, n


def test_two_counters_move_together_or_not_at_all(store):
    """max_msgs claimed by one setting, max_quota by another: a refusal by either moves neither."""
    user_tid, domain_tid = throttle_id(store), throttle_id(store, "@example.com")
    key = "user@example.com"
    msgs, quota = Counter(user_tid, key, 60, 3, 0), Counter(domain_tid, key, 60, 0, 250)
    counters = store.throttle_counters
    model = MemoryCounting()
    for i in range(5):  # both rows are created by the first message
        now = T0 + i
        assert counters.count([msgs, quota], 1, 100, now) == model.count([msgs, quota], 1, 100, now), i
    assert counters.tracked([msgs, quota]) == model.rows
    assert {k: v.cur_msgs for k, v in model.rows.items()} == {(user_tid, key): 3, (domain_tid, key): 3}
    # max_msgs would restart, but max_quota (300 > 250) refuses: the restart is rolled back too
    model.rows[(user_tid, key)] = replace(model.rows[(user_tid, key)], init_time=T0 - 100)
    store.iredapd.execute("UPDATE throttle_tracking SET init_time = %s WHERE tid = %s", (T0 - 100, user_tid))
    got = counters.count([msgs, quota], 1, 1, T0 + 5)
    assert (got.refused, got.rule) == (quota, "max_quota")
    assert counters.tracked([msgs, quota]) == model.rows


def test_counter_rows_are_found_whatever_case_mysql_stored(store):
    if store.backend != "mysql":
        pytest.skip("MySQL's collation compares case-insensitively; the others do not")
    tid = throttle_id(store)
    stored(store, tid, "User@Example.com", Tracked(5, 0, T0 - 10))
    got = store.throttle_counters.count([Counter(tid, "user@example.com", 60, 5)], 1, 1, T0)
    assert (got.rule, got.tracked) == ("max_msgs", Tracked(5, 0, T0 - 10))


def _two_counter_worker(settings, tids, barrier, results) -> None:
    store = open_store(settings)
    counters = [Counter(tids[0], "user@example.com", 3600, 700, 0), Counter(tids[1], "user@example.com", 3600)]
    barrier.wait()
    accepted = 0
    for i in range(PER_PROCESS):
        if store.throttle_counters.count(counters, 1, 10, T0 + i).refused is None:
            accepted += 1
    store.close()
    results.put(accepted)


def test_concurrent_two_counter_messages_are_exact(store):
    """700 of 1,000 concurrent messages pass max_msgs; the other counter (no limit) of the same
    calls counts exactly those 700: refused messages were rolled back on it."""
    tids = (throttle_id(store), throttle_id(store, "@example.com"))
    store.close()
    accepted = run_processes(_two_counter_worker, store.settings, tids)
    assert sum(accepted) == 700
    rows = store.throttle_counters.rows([(tid, "user@example.com") for tid in tids])
    assert [(r.cur_msgs, r.cur_quota) for r in rows] == [(700, 7000), (700, 7000)]


def test_settings_rows_of_the_asked_kinds_and_accounts(store):
    db = store.iredapd
    for account, kind in (("@.", "outbound"), ("@.", "inbound"), ("@.", "external"), ("x@y.com", "outbound")):
        db.execute(
            "INSERT INTO throttle (account, kind, priority, period, msg_size, max_rcpts, max_msgs, max_quota)"
            " VALUES (%s, %s, 0, 60, 1, 2, 3, 4)",
            (account, kind),
        )
    rows = store.throttle.matching(["outbound", "inbound"], ["@.", "a@b.com", "@."])
    assert sorted((r.account, r.kind) for r in rows) == [("@.", "inbound"), ("@.", "outbound")]
    assert {(r.priority, r.period, r.msg_size, r.max_rcpts, r.max_msgs, r.max_quota) for r in rows} == {
        (0, 60, 1, 2, 3, 4)
    }
