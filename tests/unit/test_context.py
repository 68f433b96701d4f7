"""RequestContext: per-request memo of shared facts, on a real SQLite store."""

from __future__ import annotations

import pytest

from apd.context import RequestContext
from apd.netmatch import TrustedClients
from tests.helpers.wblist import ask, rcpt_request, sqlite_settings, sqlite_store, wblist_check


@pytest.fixture
def store(tmp_path):
    _, store = sqlite_store(tmp_path / "apd.sqlite3")
    store.vmail.execute("INSERT INTO domain (domain, active) VALUES ('local.com', 1)")
    store.vmail.execute("INSERT INTO alias_domain (alias_domain, target_domain) VALUES ('alias.com', 'local.com')")
    yield store
    store.close()


def test_a_request_without_recipient_passes_amavisd_wblist(tmp_path, store) -> None:
    """Issue 9.8: the empty recipient domain was left out of the lookup but read back (KeyError)."""
    check = wblist_check(sqlite_settings(tmp_path / "apd.sqlite3"), store)
    store.wblist.add("@.", ["198.51.100.7"], "B", False)
    assert ask(check, store, recipient="") == "REJECT Blacklisted"  # the global list still applies
    assert ask(check, store, recipient="", sender="") is None


def test_empty_domain_has_no_alias_target_and_others_are_still_looked_up(store) -> None:
    request = rcpt_request(recipient="", sender="friend@alias.com")
    ctx = RequestContext(request, store, TrustedClients([]))
    assert ctx.alias_target("") is None
    assert ctx.alias_target("ALIAS.com") == "local.com"
    assert ctx.alias_target("local.com") is None
