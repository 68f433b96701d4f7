"""The greylisting check on the embedded SQLite store: every branch, with an injected clock."""

from __future__ import annotations

import pytest

from apd import settings as settings_module
from apd.checks.greylisting import Greylisting, Timing, next_state
from apd.context import RequestContext
from apd.netmatch import TrustedClients
from apd.protocol import PolicyRequest
from apd.store import open_store, sqlite
from apd.store.greylisting import TRACKING_COLUMNS
from tests.helpers.policy_client import rcpt

T0 = 1_700_000_000
GREY = "451 4.7.1 Intentional policy rejection, please try again later"
CLIENT = "192.0.2.10"
SENDER = "someone@example.net"
RCPT = "user@example.com"


class FakeSpf:
    """Stands in for DNS: the SPF-allowed (ip, domain) pairs."""

    def __init__(self, allowed=()):
        self.allowed = set(allowed)
        self.asked = []

    def is_allowed(self, client_ip, domain):
        self.asked.append((client_ip, domain))
        return (client_ip, domain) in self.allowed


@pytest.fixture
def env(tmp_path):
    return greylisting_env(tmp_path)


def greylisting_env(tmp_path):
    """``make(**settings)`` -> Env: the greylisting check on a fresh SQLite store, DNS replaced by FakeSpf."""

    def make(**overrides):
        values = {"backend": "sqlite", "sqlite_db_path": str(tmp_path / "apd.sqlite3"), "GREYLISTING_BYPASS_SPF": False}
        values.update(overrides)
        settings = settings_module.defaults().replace(**values)
        store = open_store(settings)
        sqlite.initialise(store.iredapd)
        check = Greylisting(settings, store)
        check._spf = FakeSpf()
        return Env(settings, store, check)

    return make


class Env:
    def __init__(self, settings, store, check):
        self.settings, self.store, self.check, self.db = settings, store, check, store.iredapd
        self.trusted = TrustedClients(settings.MYNETWORKS)

    def ask(self, now=T0, **attrs):
        attrs.setdefault("client_address", CLIENT)
        attrs.setdefault("sender", SENDER)
        attrs.setdefault("recipient", RCPT)
        request = PolicyRequest.build(rcpt(**attrs))
        return self.check.check(request, RequestContext(request, self.store, self.trusted, now))

    def sql(self, text, params=()):
        return self.db.execute(text, params)

    def setting(self, account, sender, active=1, priority=0, sender_priority=0):
        self.sql(
            "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES (%s, %s, %s, %s, %s)",
            (account, priority, sender, sender_priority, active),
        )

    def whitelist(self, sender, account="@.", table="greylisting_whitelists"):
        self.sql(f"INSERT INTO {table} (account, sender) VALUES (%s, %s)", (account, sender))

    def rows(self):
        return self.db.query(
            "SELECT sender, recipient, client_address, blocked_count, passed FROM greylisting_tracking ORDER BY id"
        )

    def row(self, sender=SENDER, recipient=RCPT, client=CLIENT):
        return self.store.greylisting.tracking_row(sender, recipient, client)


def test_first_attempt_retry_too_soon_then_pass(env):
    e = env()
    e.setting("@.", "@.")
    assert e.ask(T0) == GREY
    assert e.row() == {
        "sender": SENDER,
        "recipient": RCPT,
        "client_address": CLIENT,
        "sender_domain": "example.net",
        "rcpt_domain": "example.com",
        "init_time": T0,
        "block_expired": T0 + 900,
        "record_expired": T0 + 86400,
        "blocked_count": 1,
        "passed": 0,
    }
    assert e.ask(T0 + 60) == GREY  # retry too soon: counted, block not moved
    assert e.row()["blocked_count"] == 2 and e.row()["block_expired"] == T0 + 900
    assert e.ask(T0 + 900) is None  # block expired: pass
    assert e.row()["passed"] == 1 and e.row()["record_expired"] == T0 + 900 + 30 * 86400


def test_pass_deletes_the_clients_unpassed_rows_and_whitelists_the_client(env):
    e = env()
    e.setting("@.", "@.")
    assert e.ask(T0, sender="other@example.org") == GREY
    assert e.ask(T0) == GREY
    assert e.ask(T0, client_address="198.51.100.1") == GREY  # another client's row stays
    assert e.ask(T0 + 1000) is None
    assert e.rows() == [(SENDER, RCPT, CLIENT, 1, 1), (SENDER, RCPT, "198.51.100.1", 1, 0)]
    # previously passed client: any sender, any recipient, record_expired refreshed on all passed rows
    assert e.ask(T0 + 5000, sender="new@example.org", recipient="x@example.com") is None
    assert e.row()["record_expired"] == T0 + 5000 + 30 * 86400
    assert len(e.rows()) == 2  # no row for the new triplet


def test_passed_client_counts_even_after_its_record_expired(env):
    e = env()
    e.setting("@.", "@.")
    e.sql(
        "INSERT INTO greylisting_tracking (sender, recipient, client_address, record_expired, passed)"
        " VALUES ('x@y.org', 'u@example.com', %s, %s, 1)",
        (CLIENT, T0 - 100),
    )
    assert e.ask(T0) is None  # iRedAPD does not compare record_expired here; cleanup_db removes it
    assert e.row("x@y.org", "u@example.com")["record_expired"] == T0 + 30 * 86400


def test_expired_unauthenticated_triplet_is_greylisted_again(env):
    e = env()
    e.setting("@.", "@.")
    assert e.ask(T0) == GREY
    assert e.ask(T0 + 60) == GREY
    later = T0 + 86400 + 1
    assert e.ask(later) == GREY
    assert e.row()["init_time"] == later and e.row()["blocked_count"] == 1
    assert e.row()["block_expired"] == later + 900 and e.row()["record_expired"] == later + 86400


def test_training_mode_tracks_but_never_rejects(env):
    e = env(GREYLISTING_TRAINING_MODE=True)
    e.setting("@.", "@.")
    assert e.ask(T0) is None
    assert e.ask(T0 + 1) is None
    assert e.row()["blocked_count"] == 2


def test_custom_message_and_block_time(env):
    e = env(GREYLISTING_MESSAGE="Come back later", GREYLISTING_BLOCK_EXPIRE=1)
    e.setting("@.", "@.")
    assert e.ask(T0) == "451 4.7.1 Come back later"
    assert e.ask(T0 + 59) == "451 4.7.1 Come back later"
    assert e.ask(T0 + 60) is None


@pytest.mark.parametrize(
    "rows, attrs, expected",
    [
        ([], {}, None),  # no settings row: greylisting is off
        ([("@.", "@.", 0, 0, 0)], {}, None),  # globally disabled
        ([("@.", "@.", 1, 0, 0), ("user@example.com", "@.", 0, 100, 0)], {}, None),  # per-account disable
        ([("@.", "@.", 1, 0, 0), ("@example.com", "@.", 0, 60, 0)], {}, None),  # per-domain disable
        ([("@.", "@.", 1, 0, 0), ("@.com", "@.", 0, 40, 0)], {}, None),  # per-TLD disable
        ([("@.", "@.", 0, 0, 0), ("user@example.com", "@.", 1, 100, 0)], {}, GREY),  # per-account enable
        ([("@.", "@.", 1, 0, 0), ("user@example.com", "@.", 0, 100, 0)], {"recipient": "other@example.com"}, GREY),
        ([("@.", "@.", 1, 0, 0), ("@.", "@example.net", 0, 0, 60)], {}, None),  # sender domain disabled
        ([("@.", "@.", 1, 0, 0), ("@.", "192.0.2.0/24", 0, 0, 0)], {}, None),  # CIDR, iRedAPD tool row
        ([("@.", "@.", 1, 0, 0), ("@.", "192.0.2.*", 0, 0, 70)], {}, None),  # wildcard IP
        ([("@.", "@.", 1, 0, 0), ("@.", "192.0.2.0/24", 0, 0, 0)], {"client_address": "192.0.3.1"}, GREY),
        (
            [("@.", "@.", 1, 0, 0), ("user+tag@example.com", "@.", 0, 100, 0)],
            {"recipient": "user+tag@example.com"},
            GREY,
        ),  # rows are looked up without the address extension
    ],
)
def test_settings_precedence(env, rows, attrs, expected):
    e = env()
    for account, sender, active, priority, sender_priority in rows:
        e.setting(account, sender, active, priority, sender_priority)
    assert e.ask(T0, **attrs) == expected


@pytest.mark.parametrize(
    "table, account, sender, attrs, expected",
    [
        ("greylisting_whitelists", "@.", CLIENT, {}, None),
        ("greylisting_whitelists", "@.", "192.0.2.*", {}, None),  # wildcard (DIFFERENCES 6)
        ("greylisting_whitelists", "@.", "192.0.2.0/24", {}, None),
        ("greylisting_whitelists", "@.", "192.0.3.0/24", {}, GREY),
        ("greylisting_whitelists", "@.", "@example.net", {}, None),
        ("greylisting_whitelists", "@.", "SomeOne@Example.NET", {}, None),  # LOWER(sender) as iRedAPD
        ("greylisting_whitelists", "user@example.com", "@.", {}, None),  # per-recipient whitelist
        ("greylisting_whitelists", "other@example.com", "@.", {}, GREY),
        ("greylisting_whitelists", "@.", "2001:db8::/32", {"client_address": "2001:db8::7"}, None),
        ("greylisting_whitelists", "@.", "2001:db8:1:2::/64", {"client_address": "2001:db8:1:2::7"}, None),
        ("greylisting_whitelist_domain_spf", "@.", "198.51.100.0/22", {"client_address": "198.51.101.3"}, None),
        ("greylisting_whitelist_domain_spf", "@.", "10.0.0.0/7", {"client_address": "11.2.3.4"}, None),
        ("greylisting_whitelist_domain_spf", "@.", "198.51.100.9", {"client_address": "198.51.100.9"}, None),
        ("greylisting_whitelist_domain_spf", "@.", "@example.net", {}, None),  # ptr-derived row
    ],
)
def test_whitelists(env, table, account, sender, attrs, expected):
    e = env()
    e.setting("@.", "@.")
    e.whitelist(sender, account, table)
    assert e.ask(T0, **attrs) == expected
    assert (len(e.rows()) == 1) is (expected == GREY)  # whitelisted clients are not tracked


def test_alias_domain_recipient_uses_the_target_domains_settings(env):
    e = env()
    e.sql("INSERT INTO domain (domain) VALUES ('example.com')")
    e.sql("INSERT INTO alias_domain (alias_domain, target_domain) VALUES ('alias.org', 'example.com')")
    e.setting("@.", "@.", 0)
    e.setting("@example.com", "@.", 1, 60, 0)
    assert e.ask(T0, recipient="user@alias.org") == GREY
    assert e.rows() == [(SENDER, "user@alias.org", CLIENT, 1, 0)]  # tracked under the original recipient


def test_sasl_and_trusted_clients_are_never_greylisted(env):
    e = env(MYNETWORKS=["198.51.100.0/24", "203.0.113.5"])
    e.setting("@.", "@.")
    assert e.ask(T0, sasl_username="user@example.com") is None
    assert e.ask(T0, client_address="127.0.0.1") is None
    assert e.ask(T0, client_address="198.51.100.20") is None
    assert e.ask(T0, client_address="203.0.113.5") is None
    assert e.ask(T0, client_address="not-an-ip") is None
    assert e.rows() == []


def test_null_sender_is_tracked_with_empty_sender(env):
    e = env()
    e.setting("@.", "@.")
    assert e.ask(T0, sender="") == GREY
    assert e.rows() == [("", RCPT, CLIENT, 1, 0)]


def test_spf_bypass(env):
    e = env(GREYLISTING_BYPASS_SPF=True, srs_domain="srs.example.com")
    e.setting("@.", "@.")
    e.check._spf = FakeSpf({(CLIENT, "example.net"), (CLIENT, "srs.example.com")})
    assert e.ask(T0) is None  # client in the sender domain's SPF
    assert e.ask(T0, sender="a@example.org") == GREY  # not in example.org's SPF
    assert e.ask(T0, sender="srs0=x@srs.example.com") == GREY  # SD == srs_domain: SPF not consulted
    assert e.ask(T0, sender="") == GREY  # null sender: nothing to look up
    assert e.check._spf.asked == [(CLIENT, "example.net"), (CLIENT, "example.org")]


def test_spf_not_consulted_when_bypass_is_off_or_whitelisted(env):
    e = env(GREYLISTING_BYPASS_SPF=False)
    e.setting("@.", "@.")
    assert e.ask(T0) == GREY
    e2 = env(GREYLISTING_BYPASS_SPF=True)
    e2.whitelist(CLIENT)
    assert e2.ask(T0 + 1) is None
    assert e.check._spf.asked == [] and e2.check._spf.asked == []


def test_network_tracking_lets_a_retry_from_the_same_pool_pass(env):
    e = env(GREYLISTING_TRACK_IPV4_PREFIX=24, GREYLISTING_TRACK_IPV6_PREFIX=64)
    e.setting("@.", "@.")
    assert e.ask(T0, client_address="192.0.2.10") == GREY
    assert e.ask(T0 + 60, client_address="192.0.2.99") == GREY
    assert e.row(client="192.0.2.0/24")["blocked_count"] == 2
    assert e.ask(T0 + 900, client_address="192.0.2.200") is None  # another IP of the pool passes
    assert e.ask(T0 + 901, client_address="192.0.2.1", sender="x@y.org") is None  # the network is passed
    assert e.ask(T0 + 902, client_address="192.0.3.1") == GREY  # another network is not
    assert e.ask(T0, client_address="2001:db8:1:2::1") == GREY
    assert e.ask(T0 + 900, client_address="2001:db8:1:2:aaaa::5") is None
    assert e.row(client="2001:db8:1:2::/64")["passed"] == 1


def test_default_tracking_is_per_ip(env):
    e = env()
    e.setting("@.", "@.")
    assert e.ask(T0, client_address="192.0.2.10") == GREY
    assert e.ask(T0 + 900, client_address="192.0.2.11") == GREY  # a new triplet
    assert e.ask(T0 + 900, client_address="192.0.2.10") is None


def test_rows_passed_per_ip_still_count_after_switching_to_networks(env):
    e = env()
    e.setting("@.", "@.")
    e.ask(T0)
    assert e.ask(T0 + 900) is None
    e2 = env(GREYLISTING_TRACK_IPV4_PREFIX=24)
    assert e2.ask(T0 + 1000, sender="x@y.org") is None


def test_a_change_applies_to_the_very_next_request(env):
    e = env()
    assert e.ask(T0) is None  # no setting
    e.setting("@.", "@.")
    assert e.ask(T0) == GREY
    e.whitelist("@example.net")
    assert e.ask(T0 + 1) is None
    e.sql("DELETE FROM greylisting_whitelists")
    assert e.ask(T0 + 2) == GREY
    e.sql("UPDATE greylisting SET active = 0")
    assert e.ask(T0 + 3) is None


TRACK_CASES = [
    # (stored row or None, now): the SQL statement and next_state() agree on every branch
    (None, T0),
    (
        {"init_time": T0, "block_expired": T0 + 900, "record_expired": T0 + 86400, "blocked_count": 3, "passed": 0},
        T0 + 5,
    ),
    (
        {"init_time": T0, "block_expired": T0 + 900, "record_expired": T0 + 86400, "blocked_count": 3, "passed": 0},
        T0 + 900,
    ),
    (
        {"init_time": T0, "block_expired": T0 + 900, "record_expired": T0 + 86400, "blocked_count": 3, "passed": 0},
        T0 + 86400,
    ),
    (
        {"init_time": T0, "block_expired": T0 + 900, "record_expired": T0 + 86400, "blocked_count": 3, "passed": 0},
        T0 + 86401,
    ),
    (
        {"init_time": T0, "block_expired": T0 + 900, "record_expired": T0 + 86400, "blocked_count": 3, "passed": 1},
        T0 + 86401,
    ),
]


@pytest.mark.parametrize("stored, now", TRACK_CASES)
def test_tracking_statement_matches_next_state(env, stored, now):
    assert_tracking_statement_matches(env, stored, now, Timing(15, 30, 1))


def assert_tracking_statement_matches(env, stored, now, timing):
    """The atomic SQL statement leaves the row the pure next_state() says it should."""
    e = env()
    if stored:
        e.sql(
            f"INSERT INTO greylisting_tracking ({', '.join(TRACKING_COLUMNS)}) VALUES ({', '.join(['%s'] * 10)})",
            (SENDER, RCPT, CLIENT, "example.net", "example.com", *(stored[k] for k in TRACKING_COLUMNS[5:])),
        )
    expected, greylisted = next_state(stored, now, timing)
    tracked = e.store.greylisting.track(SENDER, RCPT, CLIENT, "example.net", "example.com", timing.times(now))
    assert tracked.passed is (not greylisted)
    row = e.row()
    assert {k: row[k] for k in expected} == expected


# --- the worker's whitelist cache (apd/greylisting_whitelist_cache.py) stays exactly fresh


def test_cache_sees_inserted_deleted_and_edited_networks(env):
    e = env()
    e.setting("@.", "@.")
    e.check._whitelists = None
    from apd.greylisting_whitelist_cache import WhitelistCache

    e.check._whitelists = WhitelistCache(e.store.greylisting, slack=2)
    e.check._whitelists_source = e.store.greylisting
    for i in range(6):  # push the low-water mark above the first rows
        e.whitelist(f"10.{i}.0.0/16")
    e.whitelist("192.0.2.0/24")  # id 7: above the mark
    assert e.ask(T0, client_address="10.0.0.1") is None  # cached, below the mark, verified
    assert e.ask(T0, client_address="192.0.2.1") is None
    table = e.check._whitelists.tables[2]
    assert table.low == 5 and e.check._whitelists.reloads == 2
    e.sql("DELETE FROM greylisting_whitelists WHERE sender = '10.0.0.0/16'")  # below the mark
    assert e.ask(T0, client_address="10.0.0.1") == GREY
    e.sql("UPDATE greylisting_whitelists SET sender = '10.9.0.0/16' WHERE sender = '10.1.0.0/16'")  # edited away
    assert e.ask(T0, client_address="10.1.0.1") == GREY
    assert e.ask(T0, client_address="10.9.0.1") is None  # picked up by the reload the edit scheduled
    e.sql("UPDATE greylisting_whitelists SET account = 'other@example.com' WHERE sender = '10.2.0.0/16'")
    assert e.ask(T0, client_address="10.2.0.1") == GREY  # the verified account counts
    e.whitelist("203.0.113.0/24")  # a new row: the marker moves
    assert e.ask(T0, client_address="203.0.113.5") is None
    e.sql("DELETE FROM greylisting_whitelists WHERE sender = '203.0.113.0/24'")  # above the mark
    assert e.ask(T0 + 1, client_address="203.0.113.5") == GREY


def test_capitalised_rows_match_like_lower_sender(env):
    e = env()
    e.setting("@.", "@.")
    assert e.ask(T0) == GREY
    e.whitelist("@EXAMPLE.NET", "User@Example.com")  # account compared as lowercase too
    assert e.ask(T0 + 1) is None
    e.sql("DELETE FROM greylisting_whitelists")
    e.whitelist("2001:DB8::/32")
    assert e.ask(T0 + 2, client_address="2001:db8::5") is None
