"""apd explain's findings for greylisting and throttle: what the daemon's statement will do,
from the row read before it (pure)."""

from __future__ import annotations

from apd.checks.greylisting import Timing, next_state
from apd.explain.findings import greylisting_tracking, throttle_counter, throttle_outcome, when
from apd.throttle.rules import Counter, Tracked

NOW = 1_764_806_400  # 2025-12-04 00:00:00 UTC
TRIPLET = ("a@example.net", "u@example.com", "192.0.2.10")
TIMING = Timing(block_minutes=15, auth_days=30, unauth_days=1)


def row(init: int, block: int, record: int, blocked: int = 1, passed: int = 0) -> dict:
    return {
        "init_time": init,
        "block_expired": block,
        "record_expired": record,
        "blocked_count": blocked,
        "passed": passed,
    }


def tracking(stored: dict | None) -> str:
    new, greylisted = next_state(stored, NOW, TIMING)
    return greylisting_tracking(TRIPLET, stored, new, greylisted, NOW)


def test_when_is_utc():
    assert when(NOW) == "2025-12-04 00:00:00 UTC"


def test_greylisting_tracking_states():
    name = "tracking row (a@example.net, u@example.com, 192.0.2.10)"
    assert tracking(None) == f"{name}: none: first attempt, greylisted until 2025-12-04 00:15:00 UTC (a new row)"
    assert tracking(row(NOW - 60, NOW + 840, NOW + 86340, blocked=2)) == (
        f"{name}: still blocked until 2025-12-04 00:14:00 UTC: retry too soon, blocked_count 2 -> 3"
    )
    assert tracking(row(NOW - 1200, NOW - 300, NOW + 85200)) == (
        f"{name}: blocked until 2025-12-03 23:55:00 UTC, which has passed: passes; "
        "the triplet would be kept until 2026-01-03 00:00:00 UTC"
    )
    assert tracking(row(NOW - 90000, NOW - 89100, NOW - 3600)) == (
        f"{name}: expired at 2025-12-03 23:00:00 UTC: starts again, greylisted until 2025-12-04 00:15:00 UTC"
    )


COUNTER = Counter(7, "u@example.com", 3600, max_msgs=10, max_quota=0)


def test_throttle_counter_window_and_use():
    assert throttle_counter(COUNTER, None, 1, 500, NOW) == (
        "counter of rule id=7 for u@example.com (no row yet: a new window): "
        "max_msgs: 0 used + 1 of 10; max_quota: 0 bytes used (+500) of no limit"
    )
    old = Tracked(10, 9000, NOW - 7200)
    assert throttle_counter(COUNTER, old, 1, 500, NOW) == (
        "counter of rule id=7 for u@example.com (its window from 2025-12-03 22:00:00 UTC is over: a new one): "
        "max_msgs: 0 used + 1 of 10; max_quota: 0 bytes used (+500) of no limit"
    )


def test_throttle_outcome_refusal_and_new_values():
    key = (7, "u@example.com")
    full = {key: Tracked(10, 9000, NOW - 600)}
    assert throttle_outcome([COUNTER], full, 1, 500, NOW) == (
        "the counting UPDATE refuses: max_msgs of rule id=7 (10 + 1 > 10); no counter moves"
    )
    assert throttle_outcome([COUNTER], {key: Tracked(9, 9000, NOW - 600)}, 1, 500, NOW) == (
        "accepted: the counters would become rule id=7 for u@example.com: cur_msgs 10, cur_quota 9500"
    )
    # an expired window restarts at this message: what the UPDATE's CASE does
    assert throttle_outcome([COUNTER], {key: Tracked(10, 9000, NOW - 7200)}, 2, 500, NOW) == (
        "accepted: the counters would become rule id=7 for u@example.com: cur_msgs 2, cur_quota 500"
    )


def test_list_rows_in_words():
    from apd.access_policy import PolicyRows
    from apd.explain.findings import access_policy_rows, rdns_rows, wblist_rows
    from apd.store.wblist import ListRow

    rows = [
        ListRow("in-net", 1, 10, "u@example.com", 4, 70, "192.0.2.0/24", "B"),
        ListRow("out", 1, 10, "u@example.com", 5, 10, "friend@example.org", "W"),
    ]
    assert wblist_rows(rows) == [
        "amavisd wblist row: recipient u@example.com (users id 1, priority 10) receiving from 192.0.2.0/24"
        " (mailaddr id 4, priority 70) (a network holding the client): blacklisted",
        "amavisd outbound_wblist row: sender u@example.com (users id 1, priority 10) sending to friend@example.org"
        " (mailaddr id 5, priority 10): whitelisted",
    ]
    assert rdns_rows(["a.example.net", ".example.net"], [(".example.net", "w")]) == [
        "wblist_rdns row: .example.net: whitelisted"
    ]
    policies = PolicyRows(list_policies={"team@example.com": "membersonly"}, members={"team@example.com": {"a@x.org"}})
    assert access_policy_rows(policies) == [
        "mailing list team@example.com: access policy membersonly",
        "team@example.com: the sender is a member (a@x.org)",
    ]
