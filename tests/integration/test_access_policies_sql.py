"""sql_alias_access_policy and sql_ml_access_policy on SQLite, MariaDB and PostgreSQL, on apd's
DDL and (servers) iRedMail's own vmail schema (plugins.md, schemas.md §3.2)."""

from __future__ import annotations

import pytest

from apd import replies
from apd.checks.sql_alias_access_policy import SqlAliasAccessPolicy
from apd.checks.sql_ml_access_policy import SqlMlAccessPolicy
from apd.context import RequestContext
from apd.netmatch import TrustedClients
from apd.protocol import PolicyRequest

pytestmark = pytest.mark.servers

REJECT = replies.REJECT_NOT_AUTHORIZED

ALIASES = {
    # address: (accesspolicy, active)
    "public@test.com": ("", 1),
    "domain@test.com": ("domain", 1),
    "subdomain@test.com": ("SubDomain", 1),
    "members@test.com": ("membersonly", 1),
    "moderators@test.com": ("moderatorsonly", 1),
    "allowed@test.com": ("allowedonly", 1),
    "mm@test.com": ("MembersAndModeratorsOnly", 1),
    "inactive@test.com": ("membersonly", 0),
}
MEMBERS = [
    # address, forwarding, is_list
    ("members@test.com", "member@test.com", 1),
    ("members@test.com", "Outside@External.com", 1),  # stored in upper case
    ("members@test.com", "forwarded@test.com", 0),  # a forwarding, not a member
    ("mm@test.com", "member@test.com", 1),
    ("inactive@test.com", "member@test.com", 1),
]
MODERATORS = [
    ("moderators@test.com", "mod@test.com"),
    ("moderators@test.com", "*@wild.org"),
    ("allowed@test.com", "mod@test.com"),
    ("mm@test.com", "mod@test.com"),
    ("list-domain@test.com", "listmod@external.com"),
]
LISTS = {
    "list-domain@test.com": ("domain", 1),
    "list-sub@test.com": ("subdomain", 1),
    "list-members@test.com": ("membersonly", 1),
    "list-moderators@test.com": ("moderatorsonly", 1),
    "list-public@test.com": ("", 1),
    "list-inactive@test.com": ("domain", 0),
}
OWNERS = [("list-domain@test.com", "owner@external.com")]


def seed(store) -> None:
    db = store.vmail
    for domain in ("test.com", "other.com"):
        db.execute("INSERT INTO domain (domain, transport, active) VALUES (%s, 'dovecot', 1)", (domain,))
    db.execute("INSERT INTO alias_domain (alias_domain, target_domain) VALUES ('alias.com', 'test.com')")
    for address, (policy, active) in ALIASES.items():
        db.execute(
            "INSERT INTO alias (address, accesspolicy, domain, active) VALUES (%s, %s, 'test.com', %s)",
            (address, policy, active),
        )
    for address, forwarding, is_list in MEMBERS:
        db.execute(
            "INSERT INTO forwardings (address, forwarding, domain, dest_domain, is_list, is_forwarding, active)"
            " VALUES (%s, %s, 'test.com', %s, %s, %s, 1)",
            (address, forwarding, forwarding.split("@")[1], is_list, 1 - is_list),
        )
    for address, moderator in MODERATORS:
        db.execute(
            "INSERT INTO moderators (address, moderator, domain, dest_domain) VALUES (%s, %s, 'test.com', %s)",
            (address, moderator, moderator.split("@")[1]),
        )
    for number, (address, (policy, active)) in enumerate(LISTS.items()):
        db.execute(
            "INSERT INTO maillists (address, domain, accesspolicy, mlid, active) VALUES (%s, 'test.com', %s, %s, %s)",
            (address, policy, f"mlid-{number}", active),
        )
    for address, owner in OWNERS:
        db.execute(
            "INSERT INTO maillist_owners (address, owner, domain, dest_domain) VALUES (%s, %s, 'test.com', %s)",
            (address, owner, owner.split("@")[1]),
        )


@pytest.fixture
def store(schema_store):
    seed(schema_store)
    return schema_store


def request_of(sender: str, recipient: str, sasl_username: str = "") -> PolicyRequest:
    return PolicyRequest.build(
        {
            "request": "smtpd_access_policy",
            "protocol_state": "RCPT",
            "client_address": "198.51.100.7",
            "sender": sender,
            "recipient": recipient,
            "sasl_username": sasl_username,
        }
    )


def ask(check, store, sender: str, recipient: str) -> str | None:
    request = request_of(sender, recipient)
    return check.check(request, RequestContext(request, store, TrustedClients([])))


ALIAS_CASES = [
    # sender, recipient, expected
    ("user@external.com", "public@test.com", None),
    ("user@external.com", "domain@test.com", REJECT),
    ("user@test.com", "domain@test.com", None),
    ("user@alias.com", "domain@test.com", None),  # an alias domain of the recipient's
    ("user@sub.test.com", "domain@test.com", REJECT),
    ("user@other.com", "domain@test.com", REJECT),  # another local domain
    ("user@external.com", "domain@alias.com", REJECT),  # recipient through its alias domain
    ("user@test.com", "domain@alias.com", None),
    ("user@external.com", "domain+tag@test.com", REJECT),  # recipient with an extension
    ("user@sub.test.com", "subdomain@test.com", None),
    ("user@test.com", "subdomain@test.com", None),
    ("user@external.com", "subdomain@test.com", REJECT),
    ("member@test.com", "members@test.com", None),
    ("member+tag@test.com", "members@test.com", None),  # sender extension
    ("outside@external.com", "members@test.com", None),  # member stored in upper case
    ("member@alias.com", "members@test.com", None),  # alias-domain form of a member
    ("member@other.com", "members@test.com", REJECT),  # same local part, not an alias domain
    ("user@test.com", "members@test.com", REJECT),  # local, not a member
    ("user@external.com", "members@test.com", REJECT),
    ("mod@test.com", "members@test.com", REJECT),  # a moderator is not a member
    ("forwarded@test.com", "members@test.com", REJECT),  # is_list = 0
    ("", "members@test.com", REJECT),  # null sender
    ("user@external.com", "members+tag@test.com", REJECT),
    ("member@test.com", "members+tag@test.com", None),
    ("user@external.com", "members@alias.com", REJECT),
    ("member@test.com", "members@alias.com", None),
    ("mod@test.com", "moderators@test.com", None),
    ("anyone@wild.org", "moderators@test.com", None),  # *@wild.org
    ("anyone@sub.wild.org", "moderators@test.com", REJECT),
    ("mod@alias.com", "moderators@test.com", None),
    ("member@test.com", "moderators@test.com", REJECT),
    ("user@external.com", "moderators@test.com", REJECT),
    ("mod@test.com", "allowed@test.com", None),  # allowedonly = moderatorsonly
    ("user@test.com", "allowed@test.com", REJECT),
    ("member@test.com", "mm@test.com", None),
    ("mod@test.com", "mm@test.com", None),
    ("user@external.com", "mm@test.com", REJECT),
    ("user@external.com", "inactive@test.com", REJECT),  # iRedAPD does not read alias.active
    ("member@test.com", "inactive@test.com", None),
    ("user@external.com", "nobody@test.com", None),  # not an alias account
    ("user@external.com", "list-domain@test.com", None),  # a mailing list: the other check's
    ("user@external.com", "user@nowhere.org", None),
]


def test_alias_access_policy(store):
    check = SqlAliasAccessPolicy(store.settings, store)
    answers = [(sender, rcpt, ask(check, store, sender, rcpt)) for sender, rcpt, _ in ALIAS_CASES]
    assert answers == ALIAS_CASES


ML_CASES = [
    ("user@external.com", "list-domain@test.com", REJECT),
    ("user@test.com", "list-domain@test.com", None),
    ("user@alias.com", "list-domain@test.com", None),
    ("user@sub.test.com", "list-domain@test.com", REJECT),
    ("listmod@external.com", "list-domain@test.com", None),  # moderator
    ("owner@external.com", "list-domain@test.com", None),  # owner
    ("owner+tag@external.com", "list-domain@test.com", None),
    ("", "list-domain@test.com", REJECT),
    ("user@external.com", "list-domain+tag@test.com", REJECT),
    ("user@external.com", "list-domain@alias.com", REJECT),  # the list through an alias domain
    ("user@test.com", "list-domain@alias.com", None),
    ("owner@external.com", "list-domain@alias.com", None),  # apd: the rows of realR count
    ("user@sub.test.com", "list-sub@test.com", None),
    ("user@external.com", "list-sub@test.com", REJECT),
    ("user@external.com", "list-members@test.com", None),  # mlmmj's own policies
    ("user@external.com", "list-moderators@test.com", None),
    ("user@external.com", "list-public@test.com", None),
    ("user@external.com", "list-inactive@test.com", REJECT),  # maillists.active not read
    ("user@external.com", "domain@test.com", None),  # an alias account: the other check's
    ("user@external.com", "nolist@test.com", None),
]


def test_ml_access_policy(store):
    check = SqlMlAccessPolicy(store.settings, store)
    answers = [(sender, rcpt, ask(check, store, sender, rcpt)) for sender, rcpt, _ in ML_CASES]
    assert answers == ML_CASES


INJECTIONS = [
    "user@external.com'or'1'='1",
    "x'/**/OR/**/'1'='1'--@external.com",
    "member@test.com'--",
    "%@test.com",
    "_ember@test.com",
    "user@external.com\\",
    'user@external.com";--',
]


@pytest.mark.parametrize("sender", INJECTIONS)
def test_injection_in_sender_changes_nothing(store, sender):
    alias_check = SqlAliasAccessPolicy(store.settings, store)
    ml_check = SqlMlAccessPolicy(store.settings, store)
    for recipient in ("members@test.com", "moderators@test.com", "mm@test.com"):
        assert ask(alias_check, store, sender, recipient) == REJECT, recipient
    if not sender.endswith("@test.com"):  # a sender of test.com may write to the domain-only ones
        assert ask(alias_check, store, sender, "domain@test.com") == REJECT
        assert ask(ml_check, store, sender, "list-domain@test.com") == REJECT
    assert store.vmail.query("SELECT COUNT(*) FROM alias") == [(len(ALIASES),)]
    assert store.vmail.query("SELECT COUNT(*) FROM forwardings") == [(len(MEMBERS),)]


def test_injection_in_recipient_changes_nothing(store):
    check = SqlAliasAccessPolicy(store.settings, store)
    assert ask(check, store, "user@external.com", "members@test.com'or'1'='1") is None
    assert ask(check, store, "user@external.com", "x@test.com'or'address'like'%") is None


def count_statements(db):
    calls = []
    run = db._run

    def counted(*args, **kwargs):
        calls.append(args[0])
        return run(*args, **kwargs)

    db._run = counted
    return calls


def test_both_checks_share_one_statement(store):
    """The alias targets of the request's domains, then one statement for both checks."""
    request = request_of("user@external.com", "members@alias.com")
    ctx = RequestContext(request, store, TrustedClients([]))
    statements = count_statements(store.vmail)
    assert SqlMlAccessPolicy(store.settings, store).check(request, ctx) is None
    assert SqlAliasAccessPolicy(store.settings, store).check(request, ctx) == REJECT
    assert len(statements) == 2, statements


@pytest.mark.parametrize("kind", ["mysql", "pgsql"])
def test_through_a_real_apd(request, apd_factory, kind):
    from tests.helpers.backends import open_fresh_store
    from tests.helpers.policy_client import rcpt

    server = request.getfixturevalue("mariadb_server" if kind == "mysql" else "postgres_server")
    server.require_schema("iredmail")
    store = open_fresh_store(kind, server.settings("iredmail"), server, "iredmail")
    try:
        seed(store)
    finally:
        store.close()
    apd = apd_factory(
        plugins=["reject_null_sender", "sql_alias_access_policy", "sql_ml_access_policy"],
        workers=1,
        **server.apd_settings("iredmail"),
    )
    with apd.client() as client:
        for sender, recipient, expected in [
            ("user@external.com", "members@test.com", REJECT),
            ("Member+Tag@Test.com", "MEMBERS@test.com", "DUNNO"),  # Postfix's case: apd lowercases
            ("user@external.com", "members@alias.com", REJECT),
            ("mod@test.com", "moderators@test.com", "DUNNO"),
            ("user@external.com", "list-domain@test.com", REJECT),
            ("owner@external.com", "list-domain@test.com", "DUNNO"),
            ("member@test.com'or'1'='1", "members@test.com", REJECT),
        ]:
            assert client.ask(**rcpt(sender=sender, recipient=recipient)) == expected, (sender, recipient)
