"""wblist_rdns: candidates and decision (pure), then the check on SQLite."""

from __future__ import annotations

import pytest

from apd.checks.wblist_rdns import WblistRdns, decide, rdns_candidates
from apd.context import RequestContext
from apd.netmatch import TrustedClients
from tests.helpers.wblist import rcpt_request, sqlite_store


def test_candidates_spec_example():
    assert rdns_candidates("mail.example.co.uk") == [
        "mail.example.co.uk",
        ".mail.example.co.uk",
        ".example.co.uk",
        ".co.uk",
        ".uk",
    ]


DECIDE = [
    ([], False, (None, "")),
    ([(".example.com", "B")], False, ("REJECT Blacklisted", ".example.com")),
    ([(".example.com", "B")], True, ("DISCARD Policy discard", ".example.com")),
    ([(".example.com", "B"), ("mail.example.com", "W")], False, ("DUNNO", "mail.example.com")),
    ([(".example.com", "w")], False, (None, "")),  # only exact 'W'/'B'
]


@pytest.mark.parametrize("rows,discard,expected", DECIDE)
def test_decide(rows, discard, expected):
    assert decide(rows, discard) == expected


@pytest.fixture
def env(tmp_path):
    settings, store = sqlite_store(tmp_path / "apd.sqlite3")
    db = store.iredapd
    for rdns, wb in [(".dyn.example.net", "B"), ("good.dyn.example.net", "W"), ("exact.example.org", "B")]:
        db.execute("INSERT INTO wblist_rdns (rdns, wb) VALUES (%s, %s)", (rdns, wb))
    yield settings, store
    store.close()


CHECK = [
    ({"reverse_client_name": "host-1.dyn.example.net"}, "REJECT Blacklisted"),
    ({"reverse_client_name": "dyn.example.net"}, "REJECT Blacklisted"),  # '.name' also matches the name
    ({"reverse_client_name": "good.dyn.example.net"}, "DUNNO"),  # whitelist: DUNNO, never OK
    ({"reverse_client_name": "exact.example.org"}, "REJECT Blacklisted"),
    ({"reverse_client_name": "sub.exact.example.org"}, None),  # exact rows match only themselves
    ({"reverse_client_name": "unknown"}, None),
    ({"reverse_client_name": "host-1.dyn.example.net", "sasl_username": "u@local.com"}, None),
    ({"reverse_client_name": "host-1.dyn.example.net", "client_address": "127.0.0.1"}, None),  # trusted
    ({"reverse_client_name": "host-1.dyn.example.net", "client_address": "192.0.2.9"}, None),  # MYNETWORKS
]


@pytest.mark.parametrize("attrs,expected", CHECK)
def test_check(env, attrs, expected):
    settings, store = env
    check = WblistRdns(settings, store)
    request = rcpt_request(**attrs)
    ctx = RequestContext(request, store, TrustedClients(["192.0.2.0/24"]))
    assert check.check(request, ctx) == expected


def test_missing_reverse_client_name_is_dunno(env):
    settings, store = env
    request = rcpt_request()
    del request.attrs["reverse_client_name"]
    assert WblistRdns(settings, store).check(request, RequestContext(request, store, TrustedClients([]))) is None


def test_discard_setting(env):
    settings, store = env
    check = WblistRdns(settings.replace(WBLIST_DISCARD_INSTEAD_OF_REJECT=True), store)
    request = rcpt_request(reverse_client_name="a.dyn.example.net")
    assert check.check(request, RequestContext(request, store, TrustedClients([]))) == "DISCARD Policy discard"


LOGS = [
    ("host-1.dyn.example.net", "[198.51.100.7] Reverse client hostname is blacklisted: host-1.dyn.example.net"),
    ("good.dyn.example.net", "[198.51.100.7] Reverse client hostname is whitelisted: good.dyn.example.net."),
]


@pytest.mark.parametrize("rdns,line", LOGS)
def test_log_line_names_the_client_rdns_not_the_row(env, caplog, rdns, line):
    settings, store = env
    request = rcpt_request(reverse_client_name=rdns)
    with caplog.at_level("INFO", logger="apd.checks.wblist_rdns"):
        WblistRdns(settings, store).check(request, RequestContext(request, store, TrustedClients([])))
    assert line in [r.getMessage() for r in caplog.records]


def test_uppercase_rdns_from_postfix_is_lowercased():
    from apd.protocol import RequestReader

    requests = RequestReader().feed(b"request=smtpd_access_policy\nreverse_client_name=Host-1.DYN.Example.NET\n\n")
    assert requests[0].attrs["reverse_client_name"] == "host-1.dyn.example.net"
