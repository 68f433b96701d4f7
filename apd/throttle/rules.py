"""The throttle check's decisions, pure (plugins.md §throttle, ``apply(user, kind)``).

One ``apply()`` call, as functions of the rows and the clock:

1. ``candidates``: the accounts a setting row may name for this user and client;
2. ``ordered`` + ``claim``: walk the matching rows, most important first; each of the four
   rules goes to the first row with a value >= 0 (-1 defers, 0 claims "unlimited");
3. ``single_message_reply``: msg_size and max_rcpts need no counter;
4. ``counters``: max_msgs and max_quota are counted on a throttle_tracking row ``(tid, key)``,
   one row per claiming setting (both rules of one setting share it);
5. ``refusal`` / ``after``: does this message exceed a counter, and what the counter holds
   once counted. apd/store/counters.py does steps 5 as atomic SQL statements; ``MemoryCounting``
   is the same in memory, the reference the store's tests hold the SQL to.

apd's decided differences from iRedAPD (DIFFERENCES.md 10-12 and README):

* a wildcard-IP setting counts on its own ``(tid, '192.0.2.*')`` row, which is read and
  kept (iRedAPD never loads it, so its limits acted per message);
* a max_quota-only setting rejects (iRedAPD raised an error there, which meant DUNNO);
* a CIDR setting (``192.0.2.0/24``, priority 70) matches the clients in its network and
  counts them together on ``(tid, '192.0.2.0/24')``, as a wildcard IP does (iRedAPD never
  matched CIDR settings);
* rows of equal ``priority`` are taken most specific account first, then by id (iRedAPD:
  the database's order).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping, Protocol, Sequence

from apd import replies
from apd.address import ACCOUNT_PRIORITIES, classify, policy_addresses, wildcard_ipv4

RULES = ("msg_size", "max_rcpts", "max_msgs", "max_quota")  # the order rules are claimed and tested in
COUNTED = ("max_msgs", "max_quota")
OUTBOUND, EXTERNAL, INBOUND = "outbound", "external", "inbound"
CATCHALL_IP = "@ip"
# Account types whose counter is the client's, or the setting's own account (step 7);
# every other type counts per user.
PER_CLIENT = frozenset({"ip", "catchall_ip"})
PER_ACCOUNT = frozenset({"wildcard_ip", "wildcard_addr", "cidr_network"})


class SettingError(ValueError):
    """iRedAPD raises here, which makes the whole check answer DUNNO: a NULL limit on a row
    the walk reaches, or a non-empty user without '@'."""


@dataclass(frozen=True)
class Setting:
    """One ``throttle`` row. Limits may be None (NULL) where the schema allows it."""

    id: int
    account: str
    kind: str
    priority: int | None
    period: int | None
    msg_size: int | None
    max_rcpts: int | None
    max_msgs: int | None
    max_quota: int | None


@dataclass(frozen=True)
class Claim:
    """A rule and the row that claimed it (also what a quota notice's "Detailed setting" lists)."""

    rule: str
    tid: int
    account: str
    value: int
    period: int


@dataclass(frozen=True)
class Counter:
    """A throttle_tracking row ``(tid, key)`` to count this message on, and the limits it
    enforces (0: none; a claimed 0 "unlimited" is counted all the same)."""

    tid: int
    key: str
    period: int
    max_msgs: int = 0
    max_quota: int = 0


@dataclass(frozen=True)
class Tracked:
    """A throttle_tracking row's counters."""

    cur_msgs: int
    cur_quota: int
    init_time: int
    last_time: int = 0
    last_notify_time: int = 0


@dataclass(frozen=True)
class Counted:
    """What counting one message gave: nothing refused, or the counter and rule that refused
    and that counter's row as read after the refusal (None when it has no row)."""

    refused: Counter | None = None
    rule: str | None = None
    tracked: Tracked | None = None


ACCEPTED = Counted()


class Counting(Protocol):
    def count(self, counters: Sequence[Counter], rc: int, size: int, now: int) -> Counted:
        """Count the message on every counter, or, when one refuses, on none of them."""
        ...


@dataclass(frozen=True)
class Verdict:
    """The outcome of one ``apply()``: ``reply`` None means DUNNO."""

    reply: str | None
    rule: str | None = None
    claims: tuple[Claim, ...] = ()
    counted: Counted | None = None  # None: nothing was counted (no counter, or rejected before)


# --- candidates and claims -------------------------------------------------------------------


def candidates(user: str, client: str, alias_target: str | None, all_wildcards: bool = False) -> list[str]:
    """Step 1: ``[IP, '@ip']``, ``expand(user)`` (and of ``local@target`` for an alias domain),
    the wildcard forms of an IPv4 client, then every CIDR network holding the client."""
    found = [client, CATCHALL_IP]
    if user:
        if "@" not in user:
            raise SettingError(f"throttled user without '@': {user!r}")
        found += policy_addresses(user)
        if alias_target:
            found += policy_addresses(user.split("@", 1)[0] + "@" + alias_target)
    found += wildcard_ipv4(client, all_wildcards)
    found += containing_networks(client)
    return found


@lru_cache(maxsize=4096)
def containing_networks(client: str) -> tuple[str, ...]:
    """``192.0.2.10`` -> ``192.0.2.10/32``, ``192.0.2.10/31`` ... ``0.0.0.0/0``: the canonical text
    of every network holding the client (IPv6: compressed, 129 of them). Memoised per worker:
    clients repeat, and IPv6 text costs microseconds each."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return ()
    bits = address.max_prefixlen
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    value = int(address)
    networks = []
    for length in range(bits, -1, -1):
        masked = value & ~((1 << (bits - length)) - 1)
        networks.append(f"{socket.inet_ntop(family, masked.to_bytes(bits // 8, 'big'))}/{length}")
    return tuple(networks)


def account_type(account: str) -> str | None:
    return classify(account)


def specificity(account: str) -> int:
    """The account type's priority (schemas.md §1.1), for ties between rows of equal priority."""
    kind = account_type(account)
    return ACCOUNT_PRIORITIES.get("cidr" if kind == "cidr_network" else kind or "", 0)


def matching(rows: Sequence[Setting], kind: str, accounts: Sequence[str]) -> list[Setting]:
    """Step 2 on rows read for several calls at once: this kind, an account among the candidates.
    Lowercased: MySQL compares case-insensitively and returns 'User@X' for 'user@x'."""
    wanted = {account.lower() for account in accounts}
    return [row for row in rows if row.kind.lower() == kind and row.account.lower() in wanted]


def ordered(rows: Sequence[Setting]) -> list[Setting]:
    """``priority DESC``; ties: the more specific account, then the older row."""
    return sorted(rows, key=lambda r: (-(r.priority if r.priority is not None else -1), -specificity(r.account), r.id))


def claim(rows: Sequence[Setting]) -> tuple[Claim, ...]:
    """Step 3, in claiming order (the order of iRedAPD's "Detailed setting")."""
    claims: dict[str, Claim] = {}
    for row in rows:
        if not row.period:
            continue  # period 0 or NULL: the whole row is ignored, msg_size and max_rcpts too
        for rule in RULES:
            if rule in claims:
                continue
            value = getattr(row, rule)
            if value is None:
                raise SettingError(f"throttle row id={row.id} has NULL {rule}")
            if value >= 0:
                claims[rule] = Claim(rule, row.id, row.account, int(value), int(row.period))
    return tuple(claims.values())


def claimed(claims: Sequence[Claim], rule: str) -> Claim | None:
    return next((c for c in claims if c.rule == rule), None)


def single_message_reply(claims: Sequence[Claim], size: int, rc: int) -> tuple[str, str] | None:
    """Steps 5 and 6: (reply, rule) when the message itself is too large or has too many recipients."""
    msg_size = claimed(claims, "msg_size")
    if msg_size and size > msg_size.value > 0:
        return replies.REJECT_MSG_SIZE_EXCEEDED, "msg_size"
    max_rcpts = claimed(claims, "max_rcpts")
    if max_rcpts and rc > max_rcpts.value > 0:
        return replies.REJECT_MAX_RCPTS_EXCEEDED, "max_rcpts"
    return None


def tracking_key(account: str, user: str, client: str) -> str:
    """Step 7: what ``throttle_tracking.account`` holds for a rule claimed by ``account``."""
    kind = account_type(account)
    if kind in PER_CLIENT:
        return client
    if kind in PER_ACCOUNT:
        return account
    return user  # a domain-wide or global setting counts per user


def counters(claims: Sequence[Claim], user: str, client: str) -> list[Counter]:
    """The tracking rows of the claimed max_msgs and max_quota, one per (tid, key), in (tid, key)
    order: the order every writer locks them in, so two messages never deadlock."""
    found: dict[tuple[int, str], Counter] = {}
    for c in claims:
        if c.rule not in COUNTED:
            continue
        key = (c.tid, tracking_key(c.account, user, client))
        counter = found.get(key) or Counter(c.tid, key[1], c.period)
        found[key] = Counter(
            counter.tid,
            counter.key,
            counter.period,
            c.value if c.rule == "max_msgs" else counter.max_msgs,
            c.value if c.rule == "max_quota" else counter.max_quota,
        )
    return [found[key] for key in sorted(found)]


# --- counting ---------------------------------------------------------------------------------


def expired(tracked: Tracked, period: int, now: int) -> bool:
    """Steps 9.2 / 10.1: the window is over (an init_time of 0 reads as now: never expired)."""
    return period > 0 and tracked.init_time > 0 and now > tracked.init_time + period


def current(tracked: Tracked | None, period: int, now: int) -> tuple[int, int]:
    """(cur_msgs, cur_quota) this message is tested against: 0 for a missing row or a new window."""
    if tracked is None or expired(tracked, period, now):
        return 0, 0
    return tracked.cur_msgs, tracked.cur_quota


def refuses(counter: Counter, rule: str, tracked: Tracked | None, rc: int, size: int, now: int) -> bool:
    """Step 9.3 (max_msgs counts recipients; reaching the limit is allowed) and step 10.2
    (max_quota is tested before this message is added: the one that crosses it passes)."""
    msgs, quota = current(tracked, counter.period, now)
    if rule == "max_msgs":
        return counter.max_msgs > 0 and msgs + rc > counter.max_msgs
    return counter.max_quota > 0 and quota > counter.max_quota


def first_refusal(
    found: Sequence[Counter], rows: Mapping[tuple[int, str], Tracked], rc: int, size: int, now: int
) -> tuple[Counter, str] | None:
    """The counter and rule that refuse this message, max_msgs before max_quota as iRedAPD tests them."""
    for rule in COUNTED:
        for counter in found:
            if refuses(counter, rule, rows.get((counter.tid, counter.key)), rc, size, now):
                return counter, rule
    return None


def after(counter: Counter, tracked: Tracked | None, rc: int, size: int, now: int) -> Tracked:
    """Step 11: the row once this message is counted (a new row, a restarted window, or added to)."""
    if tracked is None:
        return Tracked(rc, size, now, now, 0)
    if expired(tracked, counter.period, now):
        return Tracked(rc, size, now, now, tracked.last_notify_time)
    init_time = tracked.init_time or now  # iRedAPD reads 0 as now and writes that back
    return Tracked(tracked.cur_msgs + rc, tracked.cur_quota + size, init_time, now, tracked.last_notify_time)


@dataclass
class MemoryCounting:
    """``Counting`` over a dict: the semantics the SQL statements of apd/store/counters.py implement."""

    rows: dict[tuple[int, str], Tracked] = field(default_factory=dict)

    def count(self, counters: Sequence[Counter], rc: int, size: int, now: int) -> Counted:
        refusal = first_refusal(counters, self.rows, rc, size, now)
        if refusal:
            counter, rule = refusal
            return Counted(counter, rule, self.rows.get((counter.tid, counter.key)))
        for counter in counters:
            key = (counter.tid, counter.key)
            self.rows[key] = after(counter, self.rows.get(key), rc, size, now)
        return ACCEPTED


# --- one apply() call -------------------------------------------------------------------------


def judge(
    rows: Sequence[Setting],
    kind: str,
    accounts: Sequence[str],
    user: str,
    client: str,
    rc: int,
    size: int,
    now: int,
    counting: Counting,
) -> Verdict:
    """``apply(user, kind)`` on the rows read for this request; ``counting`` is called at most once.
    Raises SettingError as iRedAPD fails (the check then answers DUNNO)."""
    claims = claim(ordered(matching(rows, kind, accounts)))
    if not claims:
        return Verdict(None)
    single = single_message_reply(claims, size, rc)
    if single:
        return Verdict(single[0], single[1], claims)
    found = counters(claims, user, client)
    if not found:
        return Verdict(None, claims=claims)
    counted = counting.count(found, rc, size, now)
    if counted.refused is None:
        return Verdict(None, claims=claims, counted=counted)
    return Verdict(replies.REJECT_QUOTA_EXCEEDED, counted.rule, claims, counted)
