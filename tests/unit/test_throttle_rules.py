"""The throttle check's pure decisions (plugins.md §throttle), table-driven, clock injected.

``judge`` with ``MemoryCounting`` is the whole of one ``apply(user, kind)`` call; ``calls`` is
the entry (who is throttled, the bypasses). The SQL counting is held to the same functions in
tests/integration/test_store_counters.py.
"""

from __future__ import annotations

import pytest

from apd.throttle.entry import Bypass, Call, calls, message_numbers
from apd.throttle.rules import (
    Claim,
    Counter,
    MemoryCounting,
    Setting,
    SettingError,
    Tracked,
    after,
    candidates,
    claim,
    containing_networks,
    counters,
    expired,
    judge,
    ordered,
    refuses,
    single_message_reply,
    specificity,
    tracking_key,
)

T0 = 1_700_000_000
IP = "192.0.2.10"
USER = "user@d.com"
QUOTA = "REJECT Throttling quota exceeded"
SIZE = "REJECT Message size is too large"
RCPTS = "REJECT Too many recipients in single message"
ALL_BYPASSES = Bypass(same_domain=True, mynetworks=True, local_recipient=True)
NO_BYPASS = Bypass(same_domain=False, mynetworks=False, local_recipient=False)


def row(
    tid: int,
    account: str,
    period: int | None = 3600,
    msg_size: int | None = -1,
    max_rcpts: int | None = -1,
    max_msgs: int | None = -1,
    max_quota: int | None = -1,
    priority: int | None = None,
    kind: str = "outbound",
) -> Setting:
    prio = specificity(account) if priority is None else priority  # what the admin tools store
    return Setting(tid, account, kind, prio, period, msg_size, max_rcpts, max_msgs, max_quota)


def apply(rows, counting, rc=1, size=100, now=T0, user=USER, kind="outbound", client=IP, alias=None):
    return judge(rows, kind, candidates(user, client, alias), user, client, rc, size, now, counting)


def replies(rows, messages, user=USER, client=IP, kind="outbound"):
    """Send (rc, size, now) messages through one MemoryCounting; their replies and the counting."""
    counting = MemoryCounting()
    got = [apply(rows, counting, rc, size, now, user, kind, client).reply for rc, size, now in messages]
    return got, counting


# --- candidates --------------------------------------------------------------------------------


def test_candidates_of_a_user_with_an_alias_domain_and_an_ipv4_client():
    found = candidates("u@alias.org", IP, "target.com")
    assert found[:12] == [
        IP,
        "@ip",
        "u@alias.org",
        "@alias.org",
        "@.",
        "@.alias.org",
        "@.org",
        "u@target.com",
        "@target.com",
        "@.",
        "@.target.com",
        "@.com",
    ]
    assert found[12:14] == ["192.0.2.*", "192.0.*.10"]
    assert found[14:] == list(containing_networks(IP))


def test_candidates_without_a_user_are_the_client_forms_only():
    assert candidates("", IP, None)[:4] == [IP, "@ip", "192.0.2.*", "192.0.*.10"]
    assert "@." not in candidates("", IP, None)
    assert len(candidates("", IP, None, all_wildcards=True)) == 2 + 10 + 33


def test_a_user_without_at_sign_fails_as_in_iredapd():
    with pytest.raises(SettingError):
        candidates("postmaster", IP, None)


def test_containing_networks_are_canonical_and_complete():
    v4 = containing_networks("192.0.2.10")
    assert len(v4) == 33
    assert v4[:3] == ("192.0.2.10/32", "192.0.2.10/31", "192.0.2.8/30")
    assert "192.0.2.0/24" in v4 and v4[-1] == "0.0.0.0/0"
    v6 = containing_networks("2001:db8::1")
    assert len(v6) == 129 and "2001:db8::/32" in v6 and v6[-1] == "::/0"
    assert containing_networks("not-an-ip") == ()


# --- entry: who is throttled -------------------------------------------------------------------


def entry(
    sender="s@a.com",
    sasl="",
    recipient="r@b.com",
    client=IP,
    bypass=ALL_BYPASSES,
    trusted=False,
):
    asked = []

    def is_trusted():
        asked.append(True)
        return trusted

    sender_domain = sender.split("@", 1)[1] if "@" in sender else sender
    sasl_domain = sasl.split("@", 1)[1] if "@" in sasl else sasl
    rcpt_domain = recipient.split("@", 1)[1] if "@" in recipient else recipient
    found = calls(sender, sender_domain, sasl, sasl_domain, recipient, rcpt_domain, client, bypass, is_trusted)
    return found, bool(asked)


@pytest.mark.parametrize(
    "case, kwargs, expected",
    [
        ("external sender, then the recipient", {}, [Call("s@a.com", "external"), Call("r@b.com", "inbound")]),
        (
            "localhost counts as outbound",
            {"client": "127.0.0.1"},
            [Call("s@a.com", "outbound"), Call("r@b.com", "inbound")],
        ),
        ("::1 too", {"client": "::1"}, [Call("s@a.com", "outbound"), Call("r@b.com", "inbound")]),
        ("authenticated: the sasl user, no inbound", {"sasl": "u@c.com"}, [Call("u@c.com", "outbound")]),
        (
            "authenticated without the local-recipient bypass",
            {"sasl": "u@c.com", "bypass": Bypass(True, False, False)},
            [Call("u@c.com", "outbound"), Call("r@b.com", "inbound")],
        ),
        ("same domain bypasses everything", {"recipient": "r@a.com"}, []),
        ("the sasl domain is compared, not the sender's", {"sasl": "u@b.com"}, []),
        (
            "same domain without the bypass",
            {"recipient": "r@a.com", "bypass": NO_BYPASS},
            [Call("s@a.com", "external"), Call("r@a.com", "inbound")],
        ),
        (
            "multi-recipient END-OF-MESSAGE: empty recipient, never the same domain",
            {"recipient": ""},
            [Call("s@a.com", "external"), Call("", "inbound")],
        ),
        ("null sender of a multi-recipient message: '' == '' is bypassed", {"sender": "", "recipient": ""}, []),
        (
            "null sender, one recipient",
            {"sender": ""},
            [Call("", "external"), Call("r@b.com", "inbound")],
        ),
        ("trusted client with the MYNETWORKS bypass", {"trusted": True}, []),
        (
            "trusted client without it: external all the same",
            {"trusted": True, "bypass": Bypass(True, False, True)},
            [Call("s@a.com", "external"), Call("r@b.com", "inbound")],
        ),
    ],
)
def test_entry(case, kwargs, expected):
    assert entry(**kwargs)[0] == expected, case


def test_mynetworks_is_only_asked_when_its_bypass_is_set():
    assert entry(bypass=Bypass(True, False, True))[1] is False
    assert entry()[1] is True


@pytest.mark.parametrize(
    "size, count, expected",
    [("", "1", (0, 1)), ("2048", "3", (2048, 3)), ("0", "0", (0, 0))],
)
def test_message_numbers(size, count, expected):
    assert message_numbers(size, count) == expected


@pytest.mark.parametrize("size, count", [("", None), ("x", "1"), ("1", ""), ("1", "many")])
def test_message_numbers_that_fail_as_in_iredapd(size, count):
    with pytest.raises(ValueError):
        message_numbers(size, count)


# --- claiming the rules ------------------------------------------------------------------------


def test_worked_example_claims():
    rows = [
        row(1, "user@d.com", 360, msg_size=-1, max_msgs=100, max_quota=-1, max_rcpts=12, priority=100),
        row(2, "@.", 3600, msg_size=10485760, priority=0),
    ]
    assert claim(ordered(rows)) == (
        Claim("max_rcpts", 1, "user@d.com", 12, 360),
        Claim("max_msgs", 1, "user@d.com", 100, 360),
        Claim("msg_size", 2, "@.", 10485760, 3600),
    )


@pytest.mark.parametrize(
    "case, rows, expected",
    [
        (
            "-1 defers to the lower row",
            [row(1, USER, max_msgs=-1), row(2, "@d.com", max_msgs=5)],
            {"max_msgs": (2, 5)},
        ),
        (
            "0 claims 'unlimited' and stops the walk",
            [row(1, USER, max_msgs=0), row(2, "@d.com", max_msgs=5)],
            {"max_msgs": (1, 0)},
        ),
        (
            "a row with period 0 is ignored entirely, msg_size and max_rcpts too",
            [row(1, USER, period=0, msg_size=1, max_rcpts=1, max_msgs=1), row(2, "@.", max_msgs=9)],
            {"max_msgs": (2, 9)},
        ),
        (
            "period NULL too",
            [row(1, USER, period=None, max_quota=1), row(2, "@.", max_quota=9)],
            {"max_quota": (2, 9)},
        ),
        (
            "each rule from its own row",
            [row(1, USER, max_rcpts=3), row(2, "@d.com", msg_size=7, max_quota=70), row(3, "@.", max_msgs=700)],
            {"max_rcpts": (1, 3), "msg_size": (2, 7), "max_quota": (2, 70), "max_msgs": (3, 700)},
        ),
        ("nothing >= 0: nothing claimed", [row(1, USER), row(2, "@.")], {}),
    ],
)
def test_claiming(case, rows, expected):
    got = {c.rule: (c.tid, c.value) for c in claim(ordered(rows))}
    assert got == expected, case


def test_a_null_limit_fails_only_when_the_walk_reaches_it():
    with pytest.raises(SettingError):
        claim([row(1, USER, max_msgs=None)])
    # max_msgs already claimed by the first row: the NULL of the second is never compared
    assert claim([row(1, USER, msg_size=1, max_rcpts=1, max_msgs=1, max_quota=1), row(2, "@.", max_msgs=None)])
    # a row skipped for its period is never read
    assert claim([row(1, USER, period=0, max_msgs=None), row(2, "@.", max_msgs=4)])[0].tid == 2


def test_order_is_priority_then_specificity_then_id():
    rows = [
        row(5, "@.", priority=0, max_msgs=1),
        row(4, "@ip", priority=0, max_msgs=2),
        row(3, USER, priority=0, max_msgs=3),  # written by plain SQL with the default priority
        row(2, "@d.com", priority=60, max_msgs=4),
        Setting(1, "@.", "outbound", None, 60, -1, -1, 5, -1),  # NULL priority: last, as MySQL sorts it
    ]
    assert [r.id for r in ordered(rows)] == [2, 3, 4, 5, 1]


@pytest.mark.parametrize(
    "size, rc, expected",
    [
        (100, 1, None),
        (101, 1, (SIZE, "msg_size")),
        (100, 3, None),  # reaching max_rcpts is allowed
        (100, 4, (RCPTS, "max_rcpts")),
        (101, 4, (SIZE, "msg_size")),  # msg_size is tested first
    ],
)
def test_single_message_limits(size, rc, expected):
    claims = (Claim("msg_size", 1, USER, 100, 60), Claim("max_rcpts", 1, USER, 3, 60))
    assert single_message_reply(claims, size, rc) == expected


def test_unlimited_single_message_limits():
    claims = (Claim("msg_size", 1, USER, 0, 60), Claim("max_rcpts", 1, USER, 0, 60))
    assert single_message_reply(claims, 10**9, 10**4) is None


@pytest.mark.parametrize(
    "account, key",
    [
        (IP, IP),
        ("@ip", IP),
        ("192.0.2.*", "192.0.2.*"),
        ("192.0.2.0/24", "192.0.2.0/24"),
        ("user@*", "user@*"),
        (USER, USER),
        ("@d.com", USER),  # a domain setting counts per user, not per domain
        ("@.d.com", USER),
        ("@.com", USER),
        ("@.", USER),
    ],
)
def test_tracking_key(account, key):
    assert tracking_key(account, USER, IP) == key


def test_counters_share_a_row_per_setting_and_sort_by_key():
    claims = (
        Claim("msg_size", 9, "@.", 5, 60),
        Claim("max_quota", 7, "@d.com", 1000, 60),
        Claim("max_msgs", 3, IP, 10, 30),
    )
    assert counters(claims, USER, IP) == [Counter(3, IP, 30, 10, 0), Counter(7, USER, 60, 0, 1000)]
    both = (Claim("max_msgs", 3, "@.", 10, 30), Claim("max_quota", 3, "@.", 0, 30))
    assert counters(both, USER, IP) == [Counter(3, USER, 30, 10, 0)]


# --- counting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tracked, now, is_expired",
    [
        (Tracked(5, 0, T0), T0 + 60, False),  # the last second of the window
        (Tracked(5, 0, T0), T0 + 61, True),
        (Tracked(5, 0, 0), T0 + 10**6, False),  # init_time 0 reads as now
    ],
)
def test_window_expiry(tracked, now, is_expired):
    assert expired(tracked, 60, now) is is_expired


@pytest.mark.parametrize(
    "case, counter, tracked, rc, size, refused",
    [
        ("reaching max_msgs is allowed", Counter(1, USER, 60, 10), Tracked(7, 0, T0), 3, 0, None),
        ("one over it is not", Counter(1, USER, 60, 10), Tracked(7, 0, T0), 4, 0, "max_msgs"),
        ("a missing row: only this message counts", Counter(1, USER, 60, 10), None, 10, 0, None),
        ("too many for an empty row", Counter(1, USER, 60, 10), None, 11, 0, "max_msgs"),
        ("an expired window starts empty", Counter(1, USER, 60, 10), Tracked(10, 0, T0 - 61), 10, 0, None),
        ("max_quota tests before adding", Counter(1, USER, 60, 0, 100), Tracked(0, 100, T0), 1, 10**6, None),
        ("and refuses once over", Counter(1, USER, 60, 0, 100), Tracked(0, 101, T0), 1, 1, "max_quota"),
        ("max_msgs is reported first", Counter(1, USER, 60, 1, 1), Tracked(1, 2, T0), 1, 1, "max_msgs"),
        ("0 is unlimited", Counter(1, USER, 60, 0, 0), Tracked(10**6, 10**9, T0), 10**4, 10**9, None),
    ],
)
def test_refusal(case, counter, tracked, rc, size, refused):
    got = next((rule for rule in ("max_msgs", "max_quota") if refuses(counter, rule, tracked, rc, size, T0)), None)
    assert got == refused, case


@pytest.mark.parametrize(
    "tracked, now, expected",
    [
        (None, T0, Tracked(3, 300, T0, T0, 0)),
        (Tracked(5, 500, T0 - 30, T0 - 1, T0 - 2), T0, Tracked(8, 800, T0 - 30, T0, T0 - 2)),
        (Tracked(5, 500, T0 - 61, T0 - 1, T0 - 2), T0, Tracked(3, 300, T0, T0, T0 - 2)),  # restarted
        (Tracked(5, 500, 0, 0, 0), T0, Tracked(8, 800, T0, T0, 0)),  # init_time 0 is written as now
    ],
)
def test_after(tracked, now, expected):
    assert after(Counter(1, USER, 60, 10), tracked, 3, 300, now) == expected


# --- whole apply() calls -----------------------------------------------------------------------


def test_worked_example():
    rows = [
        row(1, "user@d.com", 360, msg_size=-1, max_msgs=100, max_quota=-1, max_rcpts=12, priority=100),
        row(2, "@.", 3600, msg_size=10485760, priority=0),
    ]
    counting = MemoryCounting()
    assert apply(rows, counting, rc=13).reply == RCPTS
    assert apply(rows, counting, rc=1, size=10485761).reply == SIZE
    got = [apply(rows, counting, rc=12, now=T0 + i).reply for i in range(9)]
    assert got == [None] * 8 + [QUOTA]  # 96 + 12 = 108 > 100
    assert counting.rows == {(1, USER): Tracked(96, 800, T0, T0 + 7, 0)}
    assert apply(rows, counting, rc=4, now=T0 + 8).reply is None  # exactly 100
    # 6 minutes later the window has passed
    assert apply(rows, counting, rc=12, now=T0 + 361).reply is None
    assert counting.rows[(1, USER)] == Tracked(12, 100, T0 + 361, T0 + 361, 0)


def test_max_msgs_counts_recipients_and_resets_with_the_window():
    rows = [row(1, "@.", 60, max_msgs=5)]
    got, counting = replies(rows, [(2, 1, T0), (3, 1, T0 + 1), (1, 1, T0 + 2), (5, 1, T0 + 61), (1, 1, T0 + 62)])
    assert got == [None, None, QUOTA, None, QUOTA]
    assert counting.rows[(1, USER)].cur_msgs == 5


def test_max_quota_only_setting_rejects():
    """DIFFERENCES.md 11: iRedAPD raised an error here (DUNNO)."""
    rows = [row(1, "@.", 60, max_quota=1000)]
    got, counting = replies(rows, [(1, 600, T0), (1, 600, T0 + 1), (1, 1, T0 + 2), (1, 1, T0 + 61)])
    assert got == [None, None, QUOTA, None]  # the message crossing the quota passes; the next is refused
    assert counting.rows[(1, USER)] == Tracked(1, 1, T0 + 61, T0 + 61, 0)


def test_a_refused_message_moves_none_of_the_calls_counters():
    rows = [row(1, USER, 60, max_msgs=3), row(2, "@d.com", 60, max_quota=250)]
    got, counting = replies(rows, [(1, 100, T0), (1, 100, T0), (1, 100, T0), (1, 100, T0), (1, 100, T0)])
    assert got == [None, None, None, QUOTA, QUOTA]
    assert counting.rows == {(1, USER): Tracked(3, 300, T0, T0, 0), (2, USER): Tracked(3, 300, T0, T0, 0)}
    # max_quota refuses (300 > 250) while max_msgs would take one more after a window restart
    assert apply(rows, counting, rc=1, size=1, now=T0 + 1).reply == QUOTA
    assert counting.rows[(1, USER)].cur_msgs == 3


def test_wildcard_ip_limit_counts_across_messages():
    """DIFFERENCES.md 10: the (tid, '192.0.2.*') row is read and kept, for any client of it."""
    rows = [row(1, "192.0.2.*", 60, max_msgs=2)]
    counting = MemoryCounting()
    got = [apply(rows, counting, client=f"192.0.2.{n}").reply for n in (1, 2, 3)]
    assert got == [None, None, QUOTA]
    assert counting.rows == {(1, "192.0.2.*"): Tracked(2, 200, T0, T0, 0)}


def test_cidr_setting_counts_its_network_together():
    rows = [row(1, "192.0.2.0/24", 60, max_msgs=2)]
    counting = MemoryCounting()
    got = [apply(rows, counting, client=client).reply for client in ("192.0.2.1", "192.0.2.200", "192.0.2.9")]
    assert got == [None, None, QUOTA]
    assert apply(rows, counting, client="198.51.100.1").reply is None  # not in the network: no setting


def test_ip_and_catchall_ip_settings_count_per_client():
    rows = [row(1, "@ip", 60, max_msgs=1)]
    counting = MemoryCounting()
    got = [apply(rows, counting, user=user, client=client).reply for user, client in
           [("a@x.com", "192.0.2.1"), ("b@x.com", "192.0.2.1"), ("a@x.com", "192.0.2.2")]]  # fmt: skip
    assert got == [None, QUOTA, None]
    assert set(counting.rows) == {(1, "192.0.2.1"), (1, "192.0.2.2")}


def test_domain_setting_counts_per_user():
    rows = [row(1, "@d.com", 60, max_msgs=1)]
    counting = MemoryCounting()
    assert [apply(rows, counting, user=u).reply for u in ("a@d.com", "b@d.com", "a@d.com")] == [None, None, QUOTA]


def test_alias_domain_user_matches_the_target_domain_settings():
    rows = [row(1, "u@target.com", 60, max_msgs=1)]
    counting = MemoryCounting()
    assert apply(rows, counting, user="u@alias.org", alias="target.com").reply is None
    assert apply(rows, counting, user="u@alias.org", alias="target.com").reply == QUOTA
    assert apply(rows, counting, user="u@alias.org", alias=None).reply is None  # not an alias domain (any more)
    assert set(counting.rows) == {(1, "u@alias.org")}  # counted per user as written in the request


def test_kinds_do_not_mix():
    rows = [row(1, "@.", 60, max_msgs=0, kind="inbound"), row(2, "@.", 60, max_msgs=1, kind="external")]
    counting = MemoryCounting()
    assert [apply(rows, counting, kind="external").reply for _ in range(2)] == [None, QUOTA]
    assert [apply(rows, counting, kind="inbound").reply for _ in range(3)] == [None] * 3
    assert apply(rows, counting, kind="outbound").reply is None  # no outbound row: DUNNO, nothing counted
    assert set(counting.rows) == {(1, USER), (2, USER)}


def test_multi_recipient_message_only_meets_client_settings_for_inbound():
    """END-OF-MESSAGE of a message to several recipients: R is empty, so only IP / @ip / wildcard /
    CIDR inbound settings apply, and max_msgs counts every recipient."""
    rows = [
        row(1, "@.", 60, max_msgs=1, kind="inbound"),
        row(2, "@ip", 60, max_msgs=10, kind="inbound"),
    ]
    counting = MemoryCounting()
    assert apply(rows, counting, rc=4, user="", kind="inbound").reply is None
    assert apply(rows, counting, rc=6, user="", kind="inbound").reply is None
    assert apply(rows, counting, rc=1, user="", kind="inbound").reply == QUOTA
    assert counting.rows == {(2, IP): Tracked(10, 200, T0, T0, 0)}


def test_null_sender_meets_client_settings_only():
    rows = [row(1, "@.", 60, max_msgs=0, kind="external"), row(2, "@ip", 60, max_msgs=1, kind="external")]
    got, counting = replies(rows, [(1, 1, T0), (1, 1, T0)], user="", kind="external")
    assert got == [None, QUOTA]
    assert set(counting.rows) == {(2, IP)}


def test_matching_ignores_case_as_mysql_returns_rows():
    rows = [row(1, "User@D.com", 60, max_msgs=1, kind="Outbound")]
    counting = MemoryCounting()
    assert [apply(rows, counting).reply for _ in range(2)] == [None, QUOTA]


def test_no_setting_and_single_message_rules_count_nothing():
    counting = MemoryCounting()
    assert apply([], counting).reply is None
    assert apply([row(1, "@.", 60, msg_size=10, max_rcpts=1)], counting, size=5).counted is None
    assert counting.rows == {}


def test_a_rejection_by_a_single_message_rule_counts_nothing():
    rows = [row(1, "@.", 60, msg_size=10, max_msgs=100)]
    counting = MemoryCounting()
    verdict = apply(rows, counting, size=11)
    assert (verdict.reply, verdict.rule, verdict.counted) == (SIZE, "msg_size", None)
    assert counting.rows == {}


def test_a_quota_verdict_names_the_counter_and_its_row():
    rows = [row(1, "@.", 60, max_msgs=1)]
    counting = MemoryCounting()
    apply(rows, counting)
    verdict = apply(rows, counting, now=T0 + 5)
    assert verdict.rule == "max_msgs"
    assert verdict.counted.refused == Counter(1, USER, 60, 1, 0)
    assert verdict.counted.tracked == Tracked(1, 100, T0, T0, 0)
    assert verdict.claims == (Claim("max_msgs", 1, "@.", 1, 60),)
