"""What the checks looked up, as sentences for ``apd explain`` (pure).

Greylisting's and throttle's outcomes are computed from the rows read before the check's own
statement, by the pure rules the daemon's statements implement (``greylisting.next_state``;
``rules.current`` / ``refuses`` / ``after``), so they say what the statement will do and why.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Mapping, Sequence

from apd.access_policy import PolicyRows
from apd.login_mismatch import SenderRelations
from apd.store.greylisting import Facts
from apd.store.wblist import ListRow
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


# --- white/blacklists, senderscore --------------------------------------------------------------

_COLOURS = {"W": "whitelisted", "B": "blacklisted"}


def wblist_rows(rows: Sequence[ListRow]) -> list[str]:
    """The amavisd list rows that can decide this request (what ``amavisd_wblist`` weighs)."""
    if not rows:
        return ["amavisd wblist: no row for these sender and recipient forms"]
    found = []
    for row in rows:
        colour = _COLOURS.get(row.wb, repr(row.wb))
        local = f"{row.local_email} (users id {row.local_id}, priority {row.local_priority})"
        ext = f"{row.ext_email} (mailaddr id {row.ext_id}, priority {row.ext_priority})"
        if row.direction == "out":
            found.append(f"amavisd outbound_wblist row: sender {local} sending to {ext}: {colour}")
        else:
            via = " (a network holding the client)" if row.direction == "in-net" else ""
            found.append(f"amavisd wblist row: recipient {local} receiving from {ext}{via}: {colour}")
    return found


def rdns_rows(names: Sequence[str], rows: Sequence[tuple[str, str]]) -> list[str]:
    if not rows:
        return [f"wblist_rdns: no row for {', '.join(names)}"]
    return [f"wblist_rdns row: {name}: {_COLOURS.get(wb.upper(), repr(wb))}" for name, wb in rows]


def senderscore_cached(client: str, cached: tuple[int, int] | None) -> str:
    if cached is None:
        return f"senderscore cache: no score for {client} (DNS is asked)"
    return f"senderscore cache: score {cached[0]} for {client}, stored {when(cached[1])}"


# --- accounts ------------------------------------------------------------------------------------


def local_domain(domain: str, local: bool, include_alias: bool, include_backupmx: bool) -> str:
    counted = ", ".join(
        what for what, on in (("alias domains", include_alias), ("backup MX domains", include_backupmx)) if on
    )
    return f"domain {domain or '(none)'} is {'' if local else 'not '}local" + (
        f" (counting {counted})" if counted else ""
    )


def alias_domains(targets: Mapping[str, str | None]) -> list[str]:
    return [f"alias domain {name} -> {target}" for name, target in targets.items() if target]


def sender_relations(sender: str, list_address: str, login: str, relations: SenderRelations) -> str:
    if relations.allowed:
        text = f"sender {sender} is an alias address of login {login}, or a list or alias the login belongs to"
    else:
        text = f"sender {sender} is not an alias address of login {login}, nor a list or alias the login belongs to"
    if list_address != sender:
        text += f" (looked up as {list_address})"
    if relations.mlmmj_list:
        text += "; the sender is an mlmmj mailing list (mlmmjadmin is asked)"
    return text


def password_changed(username: str, found: bool, value: object) -> str:
    if not found:
        return f"mailbox {username}: not found"
    return f"mailbox {username}: password last changed {value}"


def access_policy_rows(rows: PolicyRows) -> list[str]:
    found = [f"alias {name}: access policy {policy}" for name, policy in sorted(rows.alias_policies.items())]
    found += [f"mailing list {name}: access policy {policy}" for name, policy in sorted(rows.list_policies.items())]
    for kind, table in (("member", rows.members), ("moderator", rows.moderators), ("owner", rows.owners)):
        for name, senders in sorted(table.items()):
            found.append(f"{name}: the sender is a {kind} ({', '.join(sorted(senders))})")
    return found or ["no alias or mailing list with an access policy for this recipient"]


def ldap_entry(address: str, dn: str | None, entry: Mapping[str, Sequence[str]] | None) -> str:
    if dn is None:
        return f"LDAP: no account, list or alias with mail or shadowAddress {address}"
    shown = "; ".join(f"{name}: {', '.join(values)}" for name, values in sorted((entry or {}).items()))
    return f"LDAP entry for {address}: {dn}" + (f" ({shown})" if shown else "")


def ldap_list_members(list_address: str, kind: str, members: Sequence[str] | None) -> str:
    if members is None:
        return f"LDAP: the domain of {list_address} has no entry (the policy lets the sender through)"
    return f"LDAP {kind} of {list_address}: {', '.join(sorted(members)) or 'none'}"


def _limit(value: int) -> str:
    return str(value) if value > 0 else "no limit"
