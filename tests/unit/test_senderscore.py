"""senderscore: the pure decisions (apd/senderscore.py) and the check on the embedded SQLite
store with a counted stand-in for DNS (the real DNS path: tests/integration/test_senderscore_dns.py)."""

from __future__ import annotations

import logging

import pytest

from apd import replies
from apd.checks.senderscore import Senderscore
from apd.context import RequestContext
from apd.netmatch import TrustedClients
from apd.protocol import PolicyRequest
from apd.senderscore import Lookup, cache_fresh, from_answer, log_text, query_name, valid_score, verdict
from tests.helpers.backends import open_fresh_store, sqlite_settings

NOW = 1_800_000_000
DAY = 86400
BAD = replies.REJECT_LOW_SENDER_SCORE


@pytest.mark.parametrize(
    "client,name",
    [
        ("192.0.2.10", "10.2.0.192.score.senderscore.com"),
        ("1.2.3.4", "4.3.2.1.score.senderscore.com"),
        ("2001:db8::1", None),  # step 2: IPv4 only
        ("::ffff:192.0.2.1", None),
        ("", None),
        ("192.0.2", None),
        ("192.0.2.10.evil.org", None),
        ("192.0.2.10\nx", None),
    ],
)
def test_query_name(client, name):
    assert query_name(client) == name


@pytest.mark.parametrize(
    "records,lookup",
    [
        (("127.0.4.12",), Lookup(12, True)),  # the last octet of the first record
        (("127.0.4.87", "127.0.4.3"), Lookup(87, True)),
        (("127.0.4.0",), Lookup(0, True)),
        (("127.0.4.255",), Lookup(255, True)),  # out of range: step 7
        ((), Lookup(100, True)),  # NoAnswer or NXDOMAIN: 100, cached
        (None, Lookup(100, False)),  # timeout or another failure: 100, not cached
    ],
)
def test_from_answer(records, lookup):
    assert from_answer(records) == lookup


@pytest.mark.parametrize("score,valid", [(-1, False), (0, True), (30, True), (100, True), (101, False), (255, False)])
def test_valid_score(score, valid):
    assert valid_score(score) is valid


@pytest.mark.parametrize(
    "score,reject_score,expected",
    [
        (30, 30, BAD + "192.0.2.10"),  # at the limit: rejected (<=)
        (0, 30, BAD + "192.0.2.10"),
        (31, 30, None),
        (100, 30, None),
        (100, 100, BAD + "192.0.2.10"),
        (0, -1, None),  # a negative limit rejects nothing
    ],
)
def test_verdict(score, reject_score, expected):
    assert verdict(score, reject_score, "192.0.2.10") == expected


@pytest.mark.parametrize(
    "stored_at,days,fresh",
    [
        (NOW, 2, True),
        (NOW - 2 * DAY, 2, True),  # exactly the cleanup limit: cleanup_db keeps it too
        (NOW - 2 * DAY - 1, 2, False),
        (NOW - 9 * DAY, 10, True),
        (4102444799, 2, True),  # senderscore_admin's whitelist rows
        (NOW - 1, 0, False),
    ],
)
def test_cache_fresh(stored_at, days, fresh):
    assert cache_fresh(stored_at, NOW, days) is fresh


def test_log_text():
    assert log_text("example.org", 87, False, False, 30) == "[example.org] senderscore: 87"
    assert log_text("example.org", 87, True, False, 30) == "[example.org] senderscore: 87 (cache matched)"
    assert log_text("x.org", 3, True, True, 30) == "[x.org] senderscore: 3 (cache matched) [REJECT (<= 30)]"


# --- the check on SQLite


class FakeDns:
    """Answers from a table; counts the queries."""

    def __init__(self, answers):
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, name):
        self.asked.append(name)
        return self.answers.get(name, ())


@pytest.fixture
def store(tmp_path):
    store = open_fresh_store("sqlite", sqlite_settings(tmp_path))
    yield store
    store.close()


def ask(check, store, now=NOW, mynetworks=(), **attrs):
    fields = {"protocol_state": "RCPT", "client_address": "192.0.2.10", "sender": "a@example.org"}
    fields.update(attrs)
    request = PolicyRequest.build(fields)
    return check.check(request, RequestContext(request, store, TrustedClients(mynetworks), now))


def make(store, answers, **settings):
    dns = FakeDns(answers)
    return Senderscore(store.settings.replace(**settings), store, query=dns), dns


def cache_rows(store):
    return store.iredapd.query("SELECT client_address, score, time FROM senderscore_cache ORDER BY client_address")


def test_low_score_rejected_and_cached(store, caplog):
    check, dns = make(store, {"10.2.0.192.score.senderscore.com": ("127.0.4.12",)})
    with caplog.at_level(logging.INFO, logger="apd.checks.senderscore"):
        assert ask(check, store) == BAD + "192.0.2.10"
        assert ask(check, store, now=NOW + 60) == BAD + "192.0.2.10"
    assert dns.asked == ["10.2.0.192.score.senderscore.com"]  # the second answer came from the cache
    assert cache_rows(store) == [("192.0.2.10", 12, NOW)]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "[192.0.2.10] [example.org] senderscore: 12 [REJECT (<= 30)]",
        "[192.0.2.10] [example.org] senderscore: 12 (cache matched) [REJECT (<= 30)]",
    ]


@pytest.mark.parametrize("score,reject_score,expected", [(30, 30, BAD), (31, 30, None), (50, 60, BAD), (0, -1, None)])
def test_reject_score_setting(store, score, reject_score, expected):
    check, _ = make(
        store, {"10.2.0.192.score.senderscore.com": (f"127.0.4.{score}",)}, SENDERSCORE_REJECT_SCORE=reject_score
    )
    assert ask(check, store) == (expected and expected + "192.0.2.10")


def test_no_record_is_100_and_cached(store):
    check, dns = make(store, {})
    assert ask(check, store) is None
    assert ask(check, store) is None
    assert len(dns.asked) == 1
    assert cache_rows(store) == [("192.0.2.10", 100, NOW)]


def test_failure_is_100_and_not_cached(store):
    check, dns = make(store, {})
    check._query = lambda name: dns.asked.append(name)  # None: a timeout
    assert ask(check, store) is None
    assert ask(check, store) is None
    assert len(dns.asked) == 2
    assert cache_rows(store) == []


def test_out_of_range_score_is_dunno_and_not_cached(store, caplog):
    check, _ = make(store, {"10.2.0.192.score.senderscore.com": ("127.0.4.200",)})
    with caplog.at_level(logging.ERROR):
        assert ask(check, store) is None
    assert cache_rows(store) == []
    assert any("invalid score 200" in r.getMessage() for r in caplog.records)


def test_cached_row_used_then_expired_after_cache_days(store):
    store.iredapd.execute(
        "INSERT INTO senderscore_cache (client_address, score, time) VALUES ('192.0.2.10', 5, %s)", (NOW,)
    )
    check, dns = make(store, {"10.2.0.192.score.senderscore.com": ("127.0.4.90",)}, SENDERSCORE_CACHE_DAYS=2)
    assert ask(check, store, now=NOW + 2 * DAY) == BAD + "192.0.2.10"  # cached 5, no query
    assert dns.asked == []
    assert ask(check, store, now=NOW + 2 * DAY + 1) is None  # stale: asked again, replaced
    assert dns.asked == ["10.2.0.192.score.senderscore.com"]
    assert cache_rows(store) == [("192.0.2.10", 90, NOW + 2 * DAY + 1)]


def test_whitelisted_row_never_expires(store):
    store.iredapd.execute(
        "INSERT INTO senderscore_cache (client_address, score, time) VALUES ('192.0.2.10', 100, 4102444799)"
    )
    check, dns = make(store, {"10.2.0.192.score.senderscore.com": ("127.0.4.1",)})
    assert ask(check, store, now=NOW + 365 * DAY) is None
    assert dns.asked == []


@pytest.mark.parametrize(
    "attrs,mynetworks",
    [
        ({"sasl_username": "user@example.com"}, ()),  # step 1: authenticated
        ({"client_address": "2001:db8::10"}, ()),  # step 2: IPv6
        ({}, ("192.0.2.0/24",)),  # step 3: trusted
        ({}, ("192.0.2.10",)),
    ],
)
def test_skipped_without_lookup(store, attrs, mynetworks):
    check, dns = make(store, {"10.2.0.192.score.senderscore.com": ("127.0.4.1",)})
    assert ask(check, store, mynetworks=mynetworks, **attrs) is None
    assert dns.asked == []
    assert cache_rows(store) == []
