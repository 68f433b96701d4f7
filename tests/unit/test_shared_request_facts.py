"""Facts two checks of iRedMail's default list both need cost one lookup per request (issue 12's
bench, bench/profile.py): the alias part of a local-domain test and SPF."""

from __future__ import annotations

import pytest

from apd.checks.greylisting import Greylisting
from apd.checks.reject_sender_login_mismatch import RejectSenderLoginMismatch
from apd.context import RequestContext
from apd.netmatch import TrustedClients
from apd.settings import defaults
from apd.store import open_store, sqlite
from tests.helpers.wblist import rcpt_request

CLIENT = "198.51.100.7"


class FakeSpf:
    """Stands in for DNS: the SPF-allowed (ip, domain) pairs, and who asked."""

    def __init__(self, allowed=()):
        self.allowed = set(allowed)
        self.asked: list[tuple[str, str]] = []

    def is_allowed(self, client_ip: str, domain: str) -> bool:
        self.asked.append((client_ip, domain))
        return (client_ip, domain) in self.allowed


@pytest.fixture
def env(tmp_path):
    settings = defaults().replace(
        backend="sqlite", sqlite_db_path=str(tmp_path / "apd.sqlite3"), GREYLISTING_BYPASS_SPF=True
    )
    store = open_store(settings)
    sqlite.initialise(store.iredapd)
    store.vmail.execute("INSERT INTO domain (domain, active) VALUES ('local.com', 1)")
    store.vmail.execute("INSERT INTO alias_domain (alias_domain, target_domain) VALUES ('alias.com', 'local.com')")
    store.iredapd.execute(
        "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES ('@.', 0, '@.', 0, 1)"
    )
    yield settings, store
    store.close()


def test_local_domain_test_and_alias_targets_share_one_statement(env):
    """reject_sender_login_mismatch asks whether the sender domain is local (its alias part),
    greylisting then asks the recipient domain's alias target: one alias_domain statement."""
    _, store = env
    seen: list[str] = []
    store.vmail._connection().set_trace_callback(seen.append)
    ctx = RequestContext(rcpt_request(sender="friend@x.com", recipient="user@alias.com"), store, TrustedClients([]))
    assert ctx.is_local_domain("x.com", include_alias=True, include_backupmx=False) is False
    assert ctx.alias_target("alias.com") == "local.com"
    assert ctx.is_local_domain("alias.com", include_alias=True, include_backupmx=False) is True
    assert ctx.is_local_domain("alias.com", include_alias=False) is False
    assert len([sql for sql in seen if "alias_domain" in sql]) == 1, seen


def test_greylisting_reuses_the_spf_answer_of_the_forged_sender_check(env):
    """The forged-sender check found the client in the sender domain's SPF: greylisting's SPF
    bypass takes that answer instead of evaluating the same SPF again."""
    settings, store = env
    mismatch, greylisting = RejectSenderLoginMismatch(settings, store), Greylisting(settings, store)
    mismatch._spf, greylisting._spf = FakeSpf({(CLIENT, "local.com")}), FakeSpf()
    request = rcpt_request(client_address=CLIENT, sender="someone@local.com", recipient="user@other.com")
    ctx = RequestContext(request, store, TrustedClients([]))
    assert mismatch.check(request, ctx) is None  # forged, but the SPF of local.com lists the client
    assert greylisting.check(request, ctx) is None  # bypassed on the same SPF answer
    assert mismatch._spf.asked == [(CLIENT, "local.com")] and greylisting._spf.asked == []
