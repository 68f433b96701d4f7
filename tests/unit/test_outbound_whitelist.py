"""whitelist_outbound_recipient: the pure decisions (apd/outbound_whitelist.py) and the check on
the embedded SQLite store (MariaDB, PostgreSQL and a real apd: tests/integration/test_outbound_whitelist.py)."""

from __future__ import annotations

import pytest

from apd.checks.greylisting import Greylisting
from apd.checks.whitelist_outbound_recipient import WhitelistOutboundRecipient
from apd.context import RequestContext
from apd.netmatch import TrustedClients
from apd.outbound_whitelist import (
    AUTO_WHITELISTED,
    OutboundRules,
    Whitelisting,
    needs_locality,
    valid_row,
    whitelisting,
)
from apd.protocol import PolicyRequest
from apd.settings import defaults
from tests.helpers.backends import open_fresh_store, sqlite_settings

U, UD = "user@example.com", "example.com"
R, RD = "friend+tag@other.org", "other.org"


def rules(**settings) -> OutboundRules:
    return OutboundRules.from_settings(defaults().replace(**settings))


def test_rules_defaults():
    assert rules() == OutboundRules(True, False, "user", "user", False)


@pytest.mark.parametrize(
    "settings,login,login_domain,recipient,recipient_domain,needed",
    [
        ({}, U, UD, R, RD, True),
        ({"WL_RCPT_FOR_GREYLISTING": False}, U, UD, R, RD, False),  # step 1: both off
        ({"WL_RCPT_FOR_GREYLISTING": False, "WL_RCPT_WITHOUT_SPF": True}, U, UD, R, RD, True),
        ({}, "", "", R, RD, False),  # step 2: no SMTP AUTH
        ({}, U, UD, "", "", False),  # step 3: several recipients (empty at END-OF-MESSAGE)
        ({}, U, UD, "not-an-address", "not-an-address", False),
        ({}, U, UD, "x@localhost", "localhost", False),
        ({}, U, UD, "colleague@example.com", UD, False),  # step 4: the login's own domain
    ],
)
def test_needs_locality(settings, login, login_domain, recipient, recipient_domain, needed):
    assert needs_locality(rules(**settings), login, login_domain, recipient, recipient_domain) is needed


@pytest.mark.parametrize(
    "settings,expected",
    [
        ({}, Whitelisting(((U, R, AUTO_WHITELISTED),))),
        ({"WL_RCPT_WHITELIST_DOMAIN_FOR_GREYLISTING": True}, Whitelisting((), RD)),
        ({"WL_RCPT_FOR_GREYLISTING": False, "WL_RCPT_WITHOUT_SPF": True}, Whitelisting(((U, R, ""),))),
        (
            {"WL_RCPT_FOR_GREYLISTING": False, "WL_RCPT_WITHOUT_SPF": True, "WL_RCPT_LOCAL_ACCOUNT": "domain"},
            Whitelisting((("@example.com", R, ""),)),
        ),
        (
            {"WL_RCPT_FOR_GREYLISTING": False, "WL_RCPT_WITHOUT_SPF": True, "WL_RCPT_LOCAL_ACCOUNT": "any"},
            Whitelisting((("@.", R, ""),)),
        ),
        (
            {"WL_RCPT_FOR_GREYLISTING": False, "WL_RCPT_WITHOUT_SPF": True, "WL_RCPT_RCPT": "domain"},
            Whitelisting(((U, "@other.org", ""),)),
        ),
        (
            {
                "WL_RCPT_FOR_GREYLISTING": False,
                "WL_RCPT_WITHOUT_SPF": True,
                "WL_RCPT_LOCAL_ACCOUNT": "domain",
                "WL_RCPT_RCPT": "domain",
            },
            Whitelisting((("@example.com", "@other.org", ""),)),
        ),
        # both: the direct row first, then the per-user row (equal rows: the first comment stays)
        ({"WL_RCPT_WITHOUT_SPF": True}, Whitelisting(((U, R, ""), (U, R, AUTO_WHITELISTED)))),
        (
            {"WL_RCPT_WITHOUT_SPF": True, "WL_RCPT_RCPT": "domain", "WL_RCPT_WHITELIST_DOMAIN_FOR_GREYLISTING": True},
            Whitelisting(((U, "@other.org", ""),), RD),
        ),
    ],
)
def test_whitelisting(settings, expected):
    assert whitelisting(rules(**settings), U, UD, R, RD) == expected


@pytest.mark.parametrize(
    "account,sender,valid",
    [
        (U, R, True),
        ("@example.com", "@other.org", True),
        ("@.", R, True),
        ("@.example.com", R, True),
        ("example.com", R, False),  # iRedAPD's bare domains: refused
        (U, "other.org", False),
        (U, "192.0.2.1", True),
        (U, "192.0.2.0/24", True),
        (U, "@.org", True),
        ("user@*", R, False),
        ("192.0.2.1", R, False),
        (U, "", False),
    ],
)
def test_valid_row(account, sender, valid):
    assert valid_row(account, sender) is valid


# --- the check on SQLite (and greylisting honouring what it wrote)


@pytest.fixture
def store(tmp_path):
    store = open_fresh_store("sqlite", sqlite_settings(tmp_path))
    db = store.vmail
    db.execute("INSERT INTO domain (domain, backupmx, active) VALUES ('example.com', 0, 1), ('backupmx.org', 1, 1)")
    db.execute("INSERT INTO alias_domain (alias_domain, target_domain) VALUES ('alias.example.com', 'example.com')")
    db.execute(
        "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES ('@.', 0, '@.', 0, 1)"
    )
    yield store
    store.close()


def request(state="END-OF-MESSAGE", **attrs):
    fields = {"protocol_state": state, "client_address": "192.0.2.10", "sender": U, "sasl_username": U, "recipient": R}
    fields.update(attrs)
    return PolicyRequest.build(fields)


def run(check, store, req):
    return check.check(req, RequestContext(req, store, TrustedClients(()), 1_800_000_000))


def whitelists(store):
    return store.iredapd.query("SELECT account, sender, comment FROM greylisting_whitelists ORDER BY id")


def domains(store):
    return [d for (d,) in store.iredapd.query("SELECT domain FROM greylisting_whitelist_domains ORDER BY id")]


def test_default_writes_the_recipient_once(store):
    check = WhitelistOutboundRecipient(store.settings, store)
    assert run(check, store, request()) is None
    assert run(check, store, request()) is None  # the next message: the row exists, nothing new
    assert whitelists(store) == [(U, R, AUTO_WHITELISTED)]


@pytest.mark.parametrize(
    "attrs",
    [
        {"recipient": "colleague@example.com"},  # same domain
        {"recipient": "x@alias.example.com"},  # alias domain: local
        {"recipient": "x@backupmx.org"},  # backup MX: local here
        {"recipient": ""},  # several recipients
        {"sasl_username": ""},  # not authenticated
    ],
)
def test_nothing_written(store, attrs):
    before = domains(store)  # the SQLite store's seeded defaults
    check = WhitelistOutboundRecipient(store.settings.replace(WL_RCPT_WITHOUT_SPF=True), store)
    assert run(check, store, request(**attrs)) is None
    check = WhitelistOutboundRecipient(store.settings.replace(WL_RCPT_WHITELIST_DOMAIN_FOR_GREYLISTING=True), store)
    assert run(check, store, request(**attrs)) is None
    assert whitelists(store) == [] and domains(store) == before


def test_whitelist_domain_setting(store):
    before = domains(store)
    check = WhitelistOutboundRecipient(store.settings.replace(WL_RCPT_WHITELIST_DOMAIN_FOR_GREYLISTING=True), store)
    assert run(check, store, request()) is None
    assert run(check, store, request()) is None
    assert domains(store) == before + [RD]
    assert whitelists(store) == []


def test_domain_forms_are_honoured_by_greylisting(store):
    """iRedAPD writes bare domains here, which never match; apd writes @domain."""
    settings = store.settings.replace(
        WL_RCPT_FOR_GREYLISTING=False, WL_RCPT_WITHOUT_SPF=True, WL_RCPT_LOCAL_ACCOUNT="domain", WL_RCPT_RCPT="domain"
    )
    inbound = request("RCPT", sender="someone@other.org", recipient="boss@example.com", sasl_username="")
    greylisting = Greylisting(settings.replace(GREYLISTING_BYPASS_SPF=False), store)
    assert run(greylisting, store, inbound).startswith("451 4.7.1")
    assert run(WhitelistOutboundRecipient(settings, store), store, request()) is None
    assert whitelists(store) == [("@example.com", "@other.org", "")]
    assert run(greylisting, store, inbound) is None


def test_store_failure_changes_no_answer(store, caplog):
    check = WhitelistOutboundRecipient(store.settings, store)
    store.vmail.execute("DROP TABLE greylisting_whitelists")
    assert run(check, store, request()) is None
    assert "nothing whitelisted" in caplog.text
