"""amavisd_wblist decision logic: pure, table-driven (plugins.md "amavisd_wblist")."""

from __future__ import annotations

import pytest

from apd.checks.amavisd_wblist import (
    Identities,
    build_candidates,
    decide,
    decide_inbound,
    decide_outbound,
    first_listed,
    identities,
    inbound_applies,
    rank_inbound,
    rank_outbound,
)
from apd.store.wblist import ListRow

REJECT, DISCARD, OK = "REJECT Blacklisted", "DISCARD Policy discard", "OK"


def row(direction, local_id, local_prio, local_email, ext_id, ext_prio, ext_email, wb):
    return ListRow(direction, local_id, local_prio, local_email, ext_id, ext_prio, ext_email, wb)


def inbound_ids(sender="friend@x.com", recipient="user@local.com", ip="192.0.2.10"):
    ids = identities(sender, sender.split("@")[1], recipient, recipient.split("@")[1], "", "")
    return build_candidates(ids, ip, False, None, None)


# --- identities and candidates (steps 2 and 5)


def test_identities_use_sasl_username_for_authenticated_mail():
    ids = identities("alias@a.com", "a.com", "r@b.com", "b.com", "user@c.com", "c.com")
    assert ids == Identities("user@c.com", "c.com", "r@b.com", "b.com", True)
    assert identities("s@a.com", "a.com", "r@b.com", "b.com", "", "").sender == "s@a.com"


CANDIDATE_CASES = [
    # (sender, sasl, ip, all wildcards, sender alias target, rcpt alias target, senders, recipients)
    (
        "friend+tag@sub.x.com",
        "",
        "192.0.2.10",
        False,
        None,
        None,
        [
            "friend+tag@sub.x.com",
            "@sub.x.com",
            "@.",
            "@.sub.x.com",
            "@.x.com",
            "@.com",
            "friend@*",
            "192.0.2.10",
            "192.0.2.*",
            "192.0.*.10",
        ],
        ["user@local.com", "@local.com", "@.", "@.local.com", "@.com"],
    ),
    (  # authenticated: no user@* form
        "me@local.com",
        "me@local.com",
        "2001:db8::1",
        False,
        None,
        None,
        ["me@local.com", "@local.com", "@.", "@.local.com", "@.com", "2001:db8::1"],
        ["user@local.com", "@local.com", "@.", "@.local.com", "@.com"],
    ),
    (  # unauthenticated IPv6 client: user@* and the bare address, no wildcard forms
        "a+b+c@x.com",
        "",
        "2001:db8::1",
        True,
        None,
        None,
        ["a+b+c@x.com", "@x.com", "@.", "@.x.com", "@.com", "a@*", "2001:db8::1"],
        ["user@local.com", "@local.com", "@.", "@.local.com", "@.com"],
    ),
    (  # authenticated from an alias domain: the login's domain is the one resolved
        "boss@elsewhere.org",
        "me@alias-s.com",
        "192.0.2.10",
        False,
        "target-s.com",
        None,
        [
            "me@alias-s.com",
            "@alias-s.com",
            "@.",
            "@.alias-s.com",
            "@.com",
            "192.0.2.10",
            "192.0.2.*",
            "192.0.*.10",
            "me@target-s.com",
            "@target-s.com",
            "@.target-s.com",
        ],
        ["user@local.com", "@local.com", "@.", "@.local.com", "@.com"],
    ),
    (  # alias domains on both sides
        "friend@alias-s.com",
        "",
        "192.0.2.10",
        False,
        "target-s.com",
        "target-r.com",
        [
            "friend@alias-s.com",
            "@alias-s.com",
            "@.",
            "@.alias-s.com",
            "@.com",
            "friend@*",
            "192.0.2.10",
            "192.0.2.*",
            "192.0.*.10",
            "friend@target-s.com",
            "@target-s.com",
            "@.target-s.com",
        ],
        [
            "user@local.com",
            "@local.com",
            "@.",
            "@.local.com",
            "@.com",
            "user@target-r.com",
            "@target-r.com",
            "@.target-r.com",
        ],
    ),
]


@pytest.mark.parametrize("sender,sasl,ip,allwild,s_target,r_target,senders,recipients", CANDIDATE_CASES)
def test_candidates(sender, sasl, ip, allwild, s_target, r_target, senders, recipients):
    s = sasl or sender
    ids = identities(sender, sender.split("@")[1], "user@local.com", "local.com", sasl, s.split("@")[1] if sasl else "")
    cands = build_candidates(ids, ip, allwild, s_target, r_target)
    assert cands.senders == senders
    assert cands.recipients == recipients


def test_all_wildcard_ip_forms():
    ids = identities("a@b.com", "b.com", "user@local.com", "local.com", "", "")
    senders = build_candidates(ids, "192.0.2.10", True, None, None).senders
    assert {"*.0.2.10", "*.*.*.*", "192.*.*.*", "192.0.*.*", "192.0.2.*"} <= set(senders)
    assert len([s for s in senders if "*" in s and "@" not in s]) == 10


INBOUND_APPLIES = [
    # (authenticated, sender domain, rcpt domain, rcpt alias target, rcpt domain local, expected)
    (False, "x.com", "local.com", None, False, True),
    (True, "local.com", "local.com", None, False, True),
    (True, "local.com", "other.com", None, False, False),
    (True, "local.com", "alias.com", "local.com", False, True),
    (True, "local.com", "second.com", None, True, True),
]


@pytest.mark.parametrize("auth,sdom,rdom,target,local,expected", INBOUND_APPLIES)
def test_inbound_applies(auth, sdom, rdom, target, local, expected):
    ids = Identities("s@" + sdom, sdom, "r@" + rdom, rdom, auth)
    assert inbound_applies(ids, target, lambda: local) is expected


# --- inbound precedence (step 8)

U = "user@local.com"
PRECEDENCE = [
    (
        "spec example: a per-user blacklist of @. beats a domain-level whitelist of friend@x.com",
        [row("in", 1, 10, U, 100, 0, "@.", "B"), row("in", 2, 5, "@local.com", 101, 10, "friend@x.com", "W")],
        [],
        REJECT,
    ),
    (
        "spec example: a per-user whitelist of @x.com beats a per-user blacklist of @.",
        [row("in", 1, 10, U, 100, 0, "@.", "B"), row("in", 1, 10, U, 102, 5, "@x.com", "W")],
        [],
        OK,
    ),
    (
        "the recipient account decides first: per-user entry beats a global entry of a more specific sender",
        [row("in", 3, 0, "@.", 101, 10, "friend@x.com", "B"), row("in", 1, 10, U, 100, 0, "@.", "W")],
        [],
        OK,
    ),
    (
        "domain account beats the global account",
        [row("in", 3, 0, "@.", 103, 9, "192.0.2.10", "W"), row("in", 2, 5, "@local.com", 102, 5, "@x.com", "B")],
        [],
        REJECT,
    ),
    (
        "within one account the sender email (10) beats its domain (5)",
        [row("in", 1, 10, U, 102, 5, "@x.com", "B"), row("in", 1, 10, U, 101, 10, "friend@x.com", "W")],
        [],
        OK,
    ),
    (
        "client IP (9) beats sender domain (5)",
        [row("in", 1, 10, U, 102, 5, "@x.com", "W"), row("in", 1, 10, U, 103, 9, "192.0.2.10", "B")],
        [],
        REJECT,
    ),
    (
        "wildcard IP (8) beats user@* (7)",
        [row("in", 1, 10, U, 104, 7, "friend@*", "B"), row("in", 1, 10, U, 105, 8, "192.0.2.*", "W")],
        [],
        OK,
    ),
    (
        "exact entries, even @. (0), come before any network",
        [row("in-net", 1, 10, U, 200, 7, "192.0.2.0/24", "B"), row("in", 1, 10, U, 100, 0, "@.", "W")],
        [200],
        OK,
    ),
    (
        "networks: the most specific one first",
        [row("in-net", 1, 10, U, 201, 7, "192.0.0.0/16", "B"), row("in-net", 1, 10, U, 200, 7, "192.0.2.0/24", "W")],
        [200, 201],
        OK,
    ),
    (
        "a network entry of a more specific account beats an exact entry of the global account",
        [row("in", 3, 0, "@.", 101, 10, "friend@x.com", "W"), row("in-net", 1, 10, U, 200, 7, "192.0.2.0/24", "B")],
        [200],
        REJECT,
    ),
    (
        "lowercase or other wb values are not entries",
        [
            row("in", 1, 10, U, 101, 10, "friend@x.com", "w"),
            row("in", 1, 10, U, 100, 0, "@.", "Y"),
            row("in", 2, 5, "@local.com", 100, 0, "@.", "B"),
        ],
        [],
        REJECT,
    ),
    (
        "priority tie between accounts: the earlier candidate (the full address) wins",
        [row("in", 4, 7, "@local.com", 100, 0, "@.", "B"), row("in", 1, 7, U, 100, 0, "@.", "W")],
        [],
        OK,
    ),
    (
        "priority tie between senders: the earlier candidate wins",
        [row("in", 1, 10, U, 106, 7, "192.0.2.10", "B"), row("in", 1, 10, U, 101, 7, "friend@x.com", "W")],
        [],
        OK,
    ),
    ("no rows: nothing to do", [], [], None),
    (
        "outbound rows never act inbound",
        [row("out", 1, 10, U, 101, 10, "friend@x.com", "B")],
        [],
        None,
    ),
]


@pytest.mark.parametrize("rows,network_order,expected", [c[1:] for c in PRECEDENCE], ids=[c[0] for c in PRECEDENCE])
def test_inbound_precedence(rows, network_order, expected):
    cands = inbound_ids()
    hit = decide_inbound(*rank_inbound(rows, cands.recipients, cands.senders, network_order))
    assert decide(None, hit, discard=False) == expected


def test_inbound_reports_the_deciding_pair():
    cands = inbound_ids()
    rows = [row("in", 1, 10, U, 100, 0, "@.", "B"), row("in", 1, 10, U, 102, 5, "@x.com", "W")]
    assert decide_inbound(*rank_inbound(rows, cands.recipients, cands.senders, [])) == ("W", 1, 102)


def test_rank_orders_exact_senders_then_networks():
    cands = inbound_ids()
    rows = [
        row("in-net", 1, 10, U, 201, 7, "192.0.0.0/16", "B"),
        row("in", 1, 10, U, 100, 0, "@.", "B"),
        row("in-net", 1, 10, U, 200, 7, "192.0.2.0/24", "B"),
        row("in", 1, 10, U, 101, 10, "friend@x.com", "B"),
        row("in", 2, 5, "@local.com", 103, 9, "192.0.2.10", "B"),
        row("in", 1, 10, U, 103, 9, "192.0.2.10", "B"),
        row("in-net", 1, 10, U, 103, 9, "192.0.2.10", "B"),  # a plain IP is also a /32 network
    ]
    local_ids, sender_ids, pairs = rank_inbound(rows, cands.recipients, cands.senders, [103, 200, 201])
    assert local_ids == [1, 2]
    assert sender_ids == [101, 103, 100, 200, 201]
    assert pairs[(1, 201)] == {"B"}


def test_same_pair_whitelist_tested_before_blacklist():
    pairs = {(1, 100): {"B", "W"}}
    assert first_listed([1], [100], pairs, lambda r, s: (r, s)) == ("W", 1, 100)


# --- outbound (step 6) and how both directions combine


def test_outbound_loops_senders_first():
    senders = ["me@local.com", "@local.com", "@.", "@.local.com", "@.com", "192.0.2.10"]
    recipients = ["x@ext.com", "@ext.com", "@.", "@.ext.com", "@.com"]
    rows = [
        row("out", 2, 5, "@local.com", 301, 10, "x@ext.com", "W"),
        row("out", 1, 10, "me@local.com", 300, 5, "@ext.com", "B"),
        row("in", 1, 10, "me@local.com", 301, 10, "x@ext.com", "W"),  # ignored: inbound
    ]
    assert decide_outbound(*rank_outbound(rows, senders, recipients)) == ("B", 300, 1)
    rows.append(row("out", 1, 10, "me@local.com", 301, 10, "x@ext.com", "W"))
    assert decide_outbound(*rank_outbound(rows, senders, recipients)) == ("W", 301, 1)


COMBINE = [
    # (outbound hit, inbound hit, discard, expected)
    (None, None, False, None),
    (("B", 5, 6), None, False, REJECT),
    (("B", 5, 6), None, True, DISCARD),
    (("B", 5, 6), ("W", 1, 2), False, REJECT),
    (("W", 5, 6), None, False, "DUNNO outbound_wblist=(5, 6, 'W')"),
    (("W", 5, 6), ("B", 1, 2), False, REJECT),
    (("W", 5, 6), ("B", 1, 2), True, DISCARD),
    (("W", 5, 6), ("W", 1, 2), False, OK),
    (None, ("W", 1, 2), True, OK),
    (None, ("B", 1, 2), False, REJECT),
]


@pytest.mark.parametrize("outbound,inbound,discard,expected", COMBINE)
def test_combine_directions(outbound, inbound, discard, expected):
    assert decide(outbound, inbound, discard) == expected
