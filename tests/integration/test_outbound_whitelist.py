"""whitelist_outbound_recipient on SQLite, MariaDB and PostgreSQL (apd's DDL and the iRedMail /
iRedAPD schemas), and through a real apd where greylisting then lets the reply through."""

from __future__ import annotations

import pytest

from apd.checks.whitelist_outbound_recipient import WhitelistOutboundRecipient
from apd.context import RequestContext
from apd.netmatch import TrustedClients
from apd.outbound_whitelist import AUTO_WHITELISTED
from apd.protocol import PolicyRequest
from tests.helpers.policy_client import rcpt
from tests.helpers.servers import require_module

pytestmark = pytest.mark.servers

GREY = "451 4.7.1 Intentional policy rejection, please try again later"


@pytest.fixture
def store(schema_store):
    db = schema_store.vmail
    db.execute("INSERT INTO domain (domain, transport, backupmx, active) VALUES ('example.com', 'dovecot', 0, 1)")
    db.execute("INSERT INTO domain (domain, transport, backupmx, active) VALUES ('backupmx.org', 'relay', 1, 1)")
    db.execute("INSERT INTO alias_domain (alias_domain, target_domain) VALUES ('alias.example.com', 'example.com')")
    return schema_store


def run(store, recipient, login="user@example.com", **settings):
    check = WhitelistOutboundRecipient(store.settings.replace(**settings), store)
    fields = {"protocol_state": "END-OF-MESSAGE", "sender": login, "sasl_username": login, "recipient": recipient}
    request = PolicyRequest.build(fields)
    return check.check(request, RequestContext(request, store, TrustedClients(()), 1_800_000_000))


def whitelists(store):
    return store.iredapd.query("SELECT account, sender, comment FROM greylisting_whitelists ORDER BY id")


def domains(store):
    return {d for (d,) in store.iredapd.query("SELECT domain FROM greylisting_whitelist_domains")}


def test_recipients_whitelisted(store):
    assert run(store, "friend+tag@other.org") is None
    assert run(store, "friend+tag@other.org") is None  # exists: left as it is
    assert run(store, "colleague@example.com") is None  # local: nothing
    assert run(store, "x@alias.example.com") is None
    assert run(store, "x@backupmx.org") is None
    both = {"WL_RCPT_WITHOUT_SPF": True, "WL_RCPT_LOCAL_ACCOUNT": "domain", "WL_RCPT_RCPT": "domain"}
    assert run(store, "y@third.net", **both) is None
    assert whitelists(store) == [
        ("user@example.com", "friend+tag@other.org", AUTO_WHITELISTED),
        ("@example.com", "@third.net", ""),
        ("user@example.com", "y@third.net", AUTO_WHITELISTED),
    ]


def test_recipient_domain_whitelisted(store):
    before = domains(store)
    assert run(store, "friend@other.org", WL_RCPT_WHITELIST_DOMAIN_FOR_GREYLISTING=True) is None
    assert run(store, "other@other.org", WL_RCPT_WHITELIST_DOMAIN_FOR_GREYLISTING=True) is None
    assert domains(store) == before | {"other.org"}
    assert whitelists(store) == []


@pytest.mark.parametrize(
    "recipient",
    [
        "friend@other.org';DELETE/FROM/greylisting_whitelists;--",
        "friend@other.org\\",
        'x@other.org";--',
        "_riend@other.org",
    ],
)
def test_injection_in_recipient_is_stored_as_text(store, recipient):
    store.iredapd.execute(
        "INSERT INTO greylisting_whitelists (account, sender, comment) VALUES ('@.', '192.0.2.1', 'x')"
    )
    assert run(store, recipient) is None
    assert whitelists(store) == [("@.", "192.0.2.1", "x"), ("user@example.com", recipient, AUTO_WHITELISTED)]
    assert store.vmail.query("SELECT COUNT(*) FROM domain") == [(2,)]


def test_reply_not_greylisted_through_apd(apd_factory):
    apd = apd_factory(plugins=["greylisting", "whitelist_outbound_recipient"], GREYLISTING_BYPASS_SPF=False, workers=1)
    apd.wait_for_log("Starting apd")
    from apd.store.sqlite import open_database

    db = open_database(apd.settings["sqlite_db_path"], 5.0)
    db.execute(
        "INSERT INTO greylisting (account, priority, sender, sender_priority, active) VALUES ('@.', 0, '@.', 0, 1)"
    )
    reply = rcpt(sender="friend@other.org", recipient="user@example.com")
    outbound = rcpt(
        protocol_state="END-OF-MESSAGE",
        sasl_username="user@example.com",
        sender="user@example.com",
        recipient="friend@other.org",
        recipient_count="1",
    )
    with apd.client() as client:
        assert client.ask(**reply) == GREY
        assert client.ask(**outbound) == "DUNNO"
        assert client.ask(**reply) == "DUNNO"
    assert db.query("SELECT account, sender, comment FROM greylisting_whitelists") == [
        ("user@example.com", "friend@other.org", AUTO_WHITELISTED)
    ]
    db.close()


def test_ldap_accounts_decide_locality(slapd_server, tmp_path):
    """Backend ldap: the local domains are slapd's, the whitelist rows go to the SQL iredapd database."""
    require_module("ldap")
    from apd.settings import defaults
    from apd.store import Store
    from apd.store.ldap import LdapAccounts
    from tests.helpers.backends import open_fresh_store, sqlite_settings

    sql = open_fresh_store("sqlite", sqlite_settings(tmp_path))
    accounts = LdapAccounts(defaults().replace(backend="ldap", **slapd_server.settings()), hostname="mx.apd.test")
    store = Store(None, None, sql.iredapd, accounts)
    store.settings = sql.settings.replace(backend="ldap")
    try:
        for recipient in ("x@example.com", "x@alias.example.com", "x@backupmx.com", "x@alias.backupmx.com"):
            assert run(store, recipient, login="user@example.com") is None
        assert whitelists(store) == []
        assert run(store, "x@disabled.com", login="user@example.com") is None  # a disabled domain is not local
        assert run(store, "x@other.org", login="user@example.com") is None
        assert whitelists(store) == [
            ("user@example.com", "x@disabled.com", AUTO_WHITELISTED),
            ("user@example.com", "x@other.org", AUTO_WHITELISTED),
        ]
    finally:
        accounts.close()
        sql.close()
