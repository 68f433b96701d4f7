"""What greylisting and throttle found, as sentences for ``apd explain`` (pure).

Each outcome is computed from the rows read before the check's own statement, by the pure rules
the daemon's statements implement (``greylisting.next_state``; ``rules.current`` / ``refuses`` /
``after``), so it says what the statement will do and why.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Mapping, Sequence

from apd.store.greylisting import Facts
from apd.throttle.rules import Counter, Setting, Tracked, after, current, expired, first_refusal


def when(epoch: int | float) -> str:
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- greylisting -------------------------------------------------------------------------------


def greylisting_facts(facts: Facts) -> list[str]:
    found = []
    for row in facts.settings:
        state = "enabled" if row.active else "disabled"
        found.append(
            f"greylisting setting: account {row.account}, sender {row.sender} (priority {row.priority}, "
            f"sender priority {row.sender_priority}): {state}"
        )
    if not facts.settings:
        found.append("greylisting setting: none for this recipient (greylisting is off for it)")
    listed = sorted(set(facts.spf_whitelist + facts.whitelist))
    if listed:
        found.append(f"greylisting whitelist rows among the candidates: {', '.join(listed)}")
    if facts.client_passed:
        found.append("the client has passed greylisting before (a passed tracking row)")
    return found


def greylisting_tracking(triplet: Sequence[str], row: Mapping | None, new: Mapping, greylisted: bool, now: int) -> str:
    """The tracking row as read, and what the daemon's statement makes of it."""
    name = f"tracking row ({', '.join(triplet)})"
    if row is None:
        return f"{name}: none: first attempt, greylisted until {when(new['block_expired'])} (a new row)"
    if now > int(row["record_expired"]):
        return (
            f"{name}: expired at {when(row['record_expired'])}: starts again, "
            f"greylisted until {when(new['block_expired'])}"
        )
    if greylisted:
        return (
            f"{name}: still blocked until {when(row['block_expired'])}: retry too soon, "
            f"blocked_count {row['blocked_count']} -> {new['blocked_count']}"
        )
    return (
        f"{name}: blocked until {when(row['block_expired'])}, which has passed: passes; "
        f"the triplet would be kept until {when(new['record_expired'])}"
    )


# --- throttle ----------------------------------------------------------------------------------


def throttle_rule(row: Setting) -> str:
    limits = ", ".join(f"{rule} {getattr(row, rule)}" for rule in ("msg_size", "max_rcpts", "max_msgs", "max_quota"))
    return (
        f"throttle rule id={row.id}: account {row.account}, {row.kind}, priority {row.priority}, "
        f"period {row.period} s: {limits}"
    )


def throttle_counter(counter: Counter, tracked: Tracked | None, rc: int, size: int, now: int) -> str:
    """One counter as read: its window and how full it is before this message."""
    if tracked is None:
        window = "no row yet: a new window"
    elif expired(tracked, counter.period, now):
        window = f"its window from {when(tracked.init_time)} is over: a new one"
    else:
        start = tracked.init_time or now
        window = f"window {when(start)} to {when(start + counter.period)}"
    msgs, quota = current(tracked, counter.period, now)
    used = [
        f"max_msgs: {msgs} used + {rc} of {_limit(counter.max_msgs)}",
        f"max_quota: {quota} bytes used (+{size}) of {_limit(counter.max_quota)}",
    ]
    return f"counter of rule id={counter.tid} for {counter.key} ({window}): {'; '.join(used)}"


def throttle_outcome(
    counters: Sequence[Counter], rows: Mapping[tuple[int, str], Tracked], rc: int, size: int, now: int
) -> str:
    """Whether the counting statement refuses, and what the counters become when it does not."""
    refusal = first_refusal(counters, rows, rc, size, now)
    if refusal:
        counter, rule = refusal
        msgs, quota = current(rows.get((counter.tid, counter.key)), counter.period, now)
        detail = f"{msgs} + {rc} > {counter.max_msgs}" if rule == "max_msgs" else f"{quota} bytes > {counter.max_quota}"
        return f"the counting UPDATE refuses: {rule} of rule id={counter.tid} ({detail}); no counter moves"
    became = []
    for counter in counters:
        new = after(counter, rows.get((counter.tid, counter.key)), rc, size, now)
        became.append(f"rule id={counter.tid} for {counter.key}: cur_msgs {new.cur_msgs}, cur_quota {new.cur_quota}")
    return f"accepted: the counters would become {'; '.join(became)}"


def _limit(value: int) -> str:
    return str(value) if value > 0 else "no limit"
