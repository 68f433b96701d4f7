"""Pure greylisting decisions (plugins.md "greylisting"), table-driven, no I/O, injected clock."""

from __future__ import annotations

import ipaddress

import pytest

from apd.checks.greylisting import (
    DISABLED,
    ENABLED,
    NO_SETTING,
    WHITELISTED,
    Timing,
    before_tracking,
    needs_spf,
    next_state,
    parse_network,
    recipient_candidates,
    reply,
    sender_candidates,
    setting_state,
    tracking_key,
    whitelisted,
)
from apd.store.greylisting import Facts, SettingRow

TIMING = Timing(block_minutes=15, auth_days=30, unauth_days=1)
T0 = 1_700_000_000
MSG = "Intentional policy rejection, please try again later"


def ip(text: str):
    return ipaddress.ip_address(text)


def test_recipient_candidates_with_alias_domain():
    assert recipient_candidates("u@alias.org", "target.com") == [
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
    assert recipient_candidates("u@example.com", None) == [
        "u@example.com",
        "@example.com",
        "@.",
        "@.example.com",
        "@.com",
    ]


@pytest.mark.parametrize(
    "sender, client, expected",
    [
        (
            "a@b.example.com",
            "192.0.2.10",
            [
                "a@b.example.com",
                "@b.example.com",
                "@.",
                "@.b.example.com",
                "@.example.com",
                "@.com",
                "192.0.2.10",
                "192.0.2.*",
            ],
        ),
        ("", "192.0.2.10", ["@.", "192.0.2.10", "192.0.2.*"]),  # null sender: expand('') == ['@.']
        ("", "2001:DB8::1", ["@.", "2001:DB8::1", "2001:db8::1"]),  # IPv6: no wildcard, normalised form added
    ],
)
def test_sender_candidates(sender, client, expected):
    assert sender_candidates(sender, client) == expected


@pytest.mark.parametrize(
    "client, v4, v6, expected",
    [
        ("192.0.2.77", 32, 128, "192.0.2.77"),  # default: iRedAPD's exact IP
        ("192.0.2.77", 24, 128, "192.0.2.0/24"),
        ("192.0.2.77", 16, 64, "192.0.0.0/16"),
        ("2001:db8:1:2:3:4:5:6", 32, 128, "2001:db8:1:2:3:4:5:6"),
        ("2001:db8:1:2:3:4:5:6", 32, 64, "2001:db8:1:2::/64"),
        ("2001:DB8::1", 32, 128, "2001:DB8::1"),  # kept as Postfix sent it
    ],
)
def test_tracking_key(client, v4, v6, expected):
    assert tracking_key(ip(client), v4, v6, client) == expected


WL_CASES = [
    # (client, sender, whitelist entries, whitelisted?)
    ("192.0.2.10", "a@example.net", [], False),
    ("192.0.2.10", "a@example.net", ["192.0.2.10"], True),  # exact IP
    ("192.0.2.10", "a@example.net", ["192.0.2.11"], False),
    ("192.0.2.10", "a@example.net", ["a@example.net"], True),  # email
    ("192.0.2.10", "a@example.net", ["@example.net"], True),  # domain
    ("192.0.2.10", "a@sub.example.net", ["@.example.net"], True),  # subdomain
    ("192.0.2.10", "a@example.net", ["@."], True),  # anyone
    ("192.0.2.10", "a@example.net", ["@other.net"], False),
    ("192.0.2.10", "", ["@."], True),  # null sender expands to @.
    ("192.0.2.10", "a@example.net", ["192.0.2.*"], True),  # wildcard as one string (DIFFERENCES 6)
    ("192.0.3.10", "a@example.net", ["192.0.2.*"], False),
    ("192.0.2.10", "a@example.net", ["*", ".", "1", "2"], False),  # iRedAPD's one-character oddity not kept
    ("192.0.2.10", "a@example.net", ["192.0.2.0/24"], True),  # CIDR
    ("192.0.2.10", "a@example.net", ["192.0.3.0/24"], False),
    ("192.0.2.10", "a@example.net", ["192.0.2.1/24"], False),  # not a strict network: skipped
    ("11.1.2.3", "a@example.net", ["10.0.0.0/7"], True),  # other first octet, any prefix (DIFFERENCES 9)
    ("192.0.2.10", "a@example.net", ["0.0.0.0/0"], True),
    ("2001:db8::25", "a@example.net", ["2001:db8::/32"], True),  # IPv6 of any form
    ("2001:db8:1:2::25", "a@example.net", ["2001:db8:1:2::/64"], True),
    ("2001:db8:1:2::25", "a@example.net", ["2001:db8:1:3::/64"], False),
    ("2001:db8::25", "a@example.net", ["2001:db8::25"], True),
    ("192.0.2.10", "a@example.net", ["2001:db8::/32", "garbage/x"], False),  # other family, garbage
    ("2001:db8::25", "a@example.net", ["0.0.0.0/0"], False),
]


@pytest.mark.parametrize("client, sender, entries, expected", WL_CASES)
def test_whitelisted(client, sender, entries, expected):
    senders = sender_candidates(sender, client)
    assert whitelisted(ip(client), client, senders, entries, parse_network) is expected


def S(sender: str, active: int = 1, priority: int = 0, sender_priority: int = 0) -> SettingRow:
    return SettingRow("", sender, priority, sender_priority, bool(active))


SETTING_CASES = [
    # (client, sender, rows, expected state)
    ("192.0.2.10", "a@example.net", [], NO_SETTING),  # greylisting off unless a row applies
    ("192.0.2.10", "a@example.net", [S("@.")], ENABLED),  # iRedMail's global row
    ("192.0.2.10", "a@example.net", [S("@other.net")], NO_SETTING),  # no row matches the sender
    ("192.0.2.10", "a@example.net", [S("@.", 0)], DISABLED),
    # per-account disable beats the global enable: recipient priority first
    ("192.0.2.10", "a@example.net", [S("@.", 1, 0, 0), S("@.", 0, 100, 0)], DISABLED),
    # per-user enable beats a global disable for a specific sender
    ("192.0.2.10", "a@example.net", [S("a@example.net", 0, 0, 100), S("@.", 1, 100, 0)], ENABLED),
    # same recipient priority: the more specific sender decides
    ("192.0.2.10", "a@example.net", [S("@.", 1, 60, 0), S("@example.net", 0, 60, 60)], DISABLED),
    ("192.0.2.10", "a@example.net", [S("@.", 1, 60, 0), S("192.0.2.10", 0, 60, 80)], DISABLED),
    ("192.0.2.10", "a@example.net", [S("@.", 1, 60, 0), S("192.0.2.*", 0, 60, 70)], DISABLED),  # wildcard
    # CIDR disable written by iRedAPD's tool (sender_priority 0) takes effect (DIFFERENCES 7)
    ("192.0.2.10", "a@example.net", [S("@.", 1, 0, 0), S("192.0.2.0/24", 0, 0, 0)], DISABLED),
    ("192.0.2.10", "a@example.net", [S("192.0.2.0/24", 0, 0, 0), S("@.", 1, 0, 0)], DISABLED),  # any row order
    ("192.0.2.10", "a@example.net", [S("@.", 1, 0, 0), S("192.0.2.0/24", 0, 0, 70)], DISABLED),
    ("192.0.3.10", "a@example.net", [S("@.", 1, 0, 0), S("192.0.2.0/24", 0, 0, 0)], ENABLED),
    ("2001:db8::1", "a@example.net", [S("@.", 1, 0, 0), S("2001:db8::/32", 0, 0, 0)], DISABLED),  # IPv6 CIDR
    # a per-user @. row beats a global row for a specific sender IP (plugins.md precedence)
    ("192.0.2.10", "a@example.net", [S("192.0.2.10", 0, 0, 80), S("@.", 1, 100, 0)], ENABLED),
    # case-sensitive exact match, as iRedAPD compares in Python
    ("192.0.2.10", "a@example.net", [S("@Example.net", 0, 0, 60), S("@.", 1, 0, 0)], ENABLED),
]


@pytest.mark.parametrize("client, sender, rows, expected", SETTING_CASES)
def test_setting_state(client, sender, rows, expected):
    assert setting_state(ip(client), sender_candidates(sender, client), rows, parse_network) == expected


@pytest.mark.parametrize(
    "spf_rows, wl_rows, settings, expected",
    [
        ((), (), (S("@."),), ENABLED),
        (("192.0.2.0/24",), (), (S("@."),), WHITELISTED),  # SPF-derived rows
        ((), ("a@example.net",), (S("@."),), WHITELISTED),
        ((), (), (), NO_SETTING),
        (("@example.net",), (), (), WHITELISTED),  # SPF ptr rows act as a sender-domain whitelist
    ],
)
def test_before_tracking(spf_rows, wl_rows, settings, expected):
    facts = Facts(spf_rows, wl_rows, settings, False)
    client = "192.0.2.10"
    senders = sender_candidates("a@example.net", client)
    assert before_tracking(ip(client), client, senders, facts, parse_network) == expected


@pytest.mark.parametrize(
    "bypass, sender_domain, srs_domain, expected",
    [
        (True, "example.net", "", True),
        (False, "example.net", "", False),
        (True, "srs.example.com", "srs.example.com", False),  # SD == srs_domain skips SPF
        (True, "", "", False),  # null sender with the default srs_domain
        (True, "", "mx.example.com", False),  # null sender: nothing to look up
    ],
)
def test_needs_spf(bypass, sender_domain, srs_domain, expected):
    assert needs_spf(bypass, sender_domain, srs_domain) is expected


def row(init, block, record, count=1, passed=0):
    return {
        "init_time": init,
        "block_expired": block,
        "record_expired": record,
        "blocked_count": count,
        "passed": passed,
    }


NEW = row(T0, T0 + 900, T0 + 86400)
STATE_CASES = [
    # (name, stored row, now, expected row, greylisted?)
    ("first attempt", None, T0, NEW, True),
    ("retry too soon", NEW, T0 + 60, row(T0, T0 + 900, T0 + 86400, 2), True),
    ("retry just before the block expires", NEW, T0 + 899, row(T0, T0 + 900, T0 + 86400, 2), True),
    ("retry when the block expires", NEW, T0 + 900, row(T0, T0 + 900, T0 + 900 + 30 * 86400, 1, 1), False),
    (
        "pass after expiry",
        row(T0, T0 + 900, T0 + 86400, 5),
        T0 + 3600,
        row(T0, T0 + 900, T0 + 3600 + 30 * 86400, 5, 1),
        False,
    ),
    ("retry at record_expired still passes", NEW, T0 + 86400, row(T0, T0 + 900, T0 + 86400 + 30 * 86400, 1, 1), False),
    (
        "expired unauthenticated triplet counts as new",
        row(T0, T0 + 900, T0 + 86400, 7),
        T0 + 86401,
        row(T0 + 86401, T0 + 86401 + 900, T0 + 86401 + 86400),
        True,
    ),
    (
        "expired triplet keeps passed (schemas.md §1.12 step 6)",
        row(T0, T0 + 900, T0 + 86400, 7, 1),
        T0 + 86401,
        row(T0 + 86401, T0 + 86401 + 900, T0 + 86401 + 86400, 1, 1),
        True,
    ),
]


@pytest.mark.parametrize("name, stored, now, expected, greylisted", STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_next_state(name, stored, now, expected, greylisted):
    new, grey = next_state(stored, now, TIMING)
    assert grey is greylisted
    assert new == expected


@pytest.mark.parametrize(
    "greylist, training, expected",
    [
        (True, False, "451 4.7.1 " + MSG),
        (True, True, None),  # training mode: tracked, never rejected
        (False, False, None),
        (False, True, None),
    ],
)
def test_reply(greylist, training, expected):
    assert reply(greylist, training, MSG) == expected


@pytest.mark.parametrize(
    "line, expected",
    [
        ("GREYLISTING_TRACK_IPV4_PREFIX = 24", ("GREYLISTING_TRACK_IPV4_PREFIX", 24)),
        ("GREYLISTING_TRACK_IPV4_PREFIX = '16'", ("GREYLISTING_TRACK_IPV4_PREFIX", 16)),
        ("GREYLISTING_TRACK_IPV4_PREFIX = 33", "expected a prefix length 0-32"),
        ("GREYLISTING_TRACK_IPV6_PREFIX = 64", ("GREYLISTING_TRACK_IPV6_PREFIX", 64)),
        ("GREYLISTING_TRACK_IPV6_PREFIX = 128", ("GREYLISTING_TRACK_IPV6_PREFIX", 128)),
        ("GREYLISTING_TRACK_IPV6_PREFIX = 120", "expected a prefix length 0-112 or 128"),  # would not fit VARCHAR(40)
        ("GREYLISTING_TRACK_IPV6_PREFIX = -1", "expected a prefix length 0-112 or 128"),
    ],
)
def test_tracking_prefix_settings(line, expected):
    from apd.settings import ConfigError, parse

    if isinstance(expected, str):
        with pytest.raises(ConfigError) as info:
            parse(line + "\n")
        assert expected in str(info.value)
    else:
        assert getattr(parse(line + "\n"), expected[0]) == expected[1]


def test_longest_allowed_ipv6_network_fits_client_address():
    key = tracking_key(
        ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 32, 112, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    )
    assert len(key) <= 40
