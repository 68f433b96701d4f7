"""The greylisting statements on SQLite, MariaDB and PostgreSQL: tracking branches, whitelist cache freshness."""

from __future__ import annotations

import pytest

from apd.checks.greylisting import Greylisting, Timing, next_state
from apd.context import RequestContext
from apd.greylisting_whitelist_cache import WhitelistCache
from apd.netmatch import TrustedClients
from apd.protocol import PolicyRequest
from apd.store.greylisting import TRACKING_COLUMNS
from tests.helpers.policy_client import rcpt
from tests.integration.greylisting_backends import BACKENDS, IREDMAIL_BACKENDS, open_backend

T0 = 1_700_000_000
GREY = "451 4.7.1 Intentional policy rejection, please try again later"
S, R, C = "someone@example.net", "user@example.com", "192.0.2.10"


@pytest.fixture(params=BACKENDS + IREDMAIL_BACKENDS)
def backend(request, tmp_path):
    b = open_backend(request, tmp_path)
    yield b
    b.close()


def ask(check, backend, now=T0, **attrs):
    request = PolicyRequest.build(rcpt(**attrs))
    return check.check(request, RequestContext(request, backend.store, TrustedClients([]), now))


ROW = {"init_time": T0, "block_expired": T0 + 900, "record_expired": T0 + 86400, "blocked_count": 3, "passed": 0}


@pytest.mark.parametrize(
    "stored, now",
    [
        (None, T0),
        (ROW, T0 + 5),
        (ROW, T0 + 900),
        (ROW, T0 + 86400),
        (ROW, T0 + 86401),
        (dict(ROW, passed=1), T0 + 86401),
    ],
)
def test_tracking_statement_matches_next_state(backend, stored, now):
    timing = Timing(15, 30, 1)
    if stored:
        backend.db.execute(
            f"INSERT INTO greylisting_tracking ({', '.join(TRACKING_COLUMNS)}) VALUES ({', '.join(['%s'] * 10)})",
            (S, R, C, "example.net", "example.com", *(stored[k] for k in TRACKING_COLUMNS[5:])),
        )
    expected, greylisted = next_state(stored, now, timing)
    repo = backend.store.greylisting
    tracked = repo.track(S, R, C, "example.net", "example.com", timing.times(now))
    assert tracked.passed is (not greylisted)
    row = repo.tracking_row(S, R, C)
    assert {k: row[k] for k in expected} == expected


def test_whitelist_cache_freshness(backend):
    settings = backend.settings.replace(GREYLISTING_BYPASS_SPF=False)
    check = Greylisting(settings, backend.store)
    check._whitelists = WhitelistCache(backend.store.greylisting, slack=2)
    check._whitelists_source = backend.store.greylisting
    db = backend.db
    db.execute(
        "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES ('@.', 0, '@.', 0, 1)"
    )

    def whitelist(sender, account="@."):
        db.execute(
            "INSERT INTO greylisting_whitelists (account, sender, comment) VALUES (%s, %s, '')", [account, sender]
        )

    for i in range(6):
        whitelist(f"10.{i}.0.0/16")
    whitelist("2001:db8::/32")
    assert ask(check, backend, client_address="10.0.0.1") is None
    assert ask(check, backend, client_address="2001:db8::1") is None
    db.execute("DELETE FROM greylisting_whitelists WHERE sender = '10.0.0.0/16'")
    assert ask(check, backend, client_address="10.0.0.1") == GREY
    db.execute("UPDATE greylisting_whitelists SET sender = '10.9.0.0/16' WHERE sender = '10.1.0.0/16'")
    assert ask(check, backend, client_address="10.1.0.1") == GREY
    assert ask(check, backend, client_address="10.9.0.1") is None
    whitelist("203.0.113.0/24")
    assert ask(check, backend, client_address="203.0.113.5") is None
    whitelist("@EXAMPLE.NET")
    assert ask(check, backend, client_address="198.51.100.1") is None  # LOWER(sender), as iRedAPD
    db.execute("DELETE FROM greylisting_whitelists")
    assert ask(check, backend, client_address="203.0.113.5") == GREY
    assert ask(check, backend, client_address="198.51.100.2") == GREY


def test_adding_an_existing_whitelist_attempts_no_insert(backend, monkeypatch):
    """whitelist_outbound_recipient adds the same pair per message: no failing INSERT (an ERROR line
    in PostgreSQL's log each time), one lookup instead."""
    repo = backend.store.greylisting
    assert repo.add_whitelist("@.", "bob@example.org", "outbound") is True
    assert repo.add_whitelist_domain("example.org") is True
    statements: list[str] = []
    execute = backend.store.iredapd.execute
    monkeypatch.setattr(
        backend.store.iredapd, "execute", lambda sql, params=(): statements.append(sql) or execute(sql, params)
    )
    assert repo.add_whitelist("@.", "bob@example.org", "outbound") is False
    assert repo.add_whitelist_domain("example.org") is False
    assert not [sql for sql in statements if sql.lstrip().upper().startswith("INSERT")]
    assert repo.whitelists("@.") == [("bob@example.org", "@.", "outbound")]
